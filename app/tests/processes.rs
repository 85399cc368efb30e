//! Two service processes on the cluster, sharing Redis: the time from a
//! write's response on one to the new value on the other (1000 writes), and
//! one process killed with SIGKILL while the other keeps serving coherently.

use reqwest::Client;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Service {
    child: Child,
    base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(t: &seaway_tests::TestDb) -> Service {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_seaway-app"))
        .env("DATABASE_URL", &t.primary_url)
        .env("READ_REPLICA_URLS", t.replica_urls.join(","))
        .env("REDIS_URL", &t.redis_url)
        .env("SEAWAY_CACHE_PREFIX", &t.prefix)
        .env("HEALTH_CHECK_INTERVAL_MS", "100")
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start seaway-app");
    let s = Service {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = Client::new();
    let start = Instant::now();
    while http.get(format!("{}/health", s.base)).send().await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "service did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test]
async fn two_processes_invalidation_latency_and_a_kill() {
    let Some(c) = seaway_tests::cluster() else {
        return;
    };
    let _g = c.shared().await;
    let t = c.fresh_db("procs").await;
    let a = start(&t).await;
    let mut b = start(&t).await;
    let http = Client::new();
    let p: Value = http
        .post(format!("{}/profiles", a.base))
        .json(&json!({"username": "p", "display_name": "P"}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let s: Value = http
        .post(format!("{}/stories", a.base))
        .json(&json!({"author_id": p["id"], "title": "t0", "body": "b", "published": true}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let id = s["id"].as_i64().expect("id");
    let url_a = format!("{}/stories/{id}", a.base);
    let url_b = format!("{}/stories/{id}", b.base);
    let title = |v: Value| v["title"].as_str().unwrap_or_default().to_owned();

    let n = 1000;
    let mut lat = Vec::with_capacity(n);
    for i in 1..=n {
        // B has the current value cached (or reads it), then A writes
        let _ = http.get(&url_b).send().await.expect("warm");
        let want = format!("t{i}");
        let r = http
            .patch(&url_a)
            .json(&json!({"title": want}))
            .send()
            .await
            .expect("patch");
        assert_eq!(r.status(), 200);
        let written = Instant::now();
        loop {
            let got = title(
                http.get(&url_b)
                    .send()
                    .await
                    .expect("get")
                    .json()
                    .await
                    .expect("json"),
            );
            if got == want {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_millis(100),
                "write {i}: B still had {got:?} after 100 ms"
            );
        }
        lat.push(written.elapsed());
    }
    lat.sort();
    println!(
        "invalidation latency across two processes over {n} writes: p50 {:?}, p99 {:?}, max {:?}",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat[n - 1]
    );

    // Kill B mid-load; A keeps serving, and reads with A's tokens are fresh.
    let (mut ok, mut failed, mut stale) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut i = 0;
    while Instant::now() < deadline {
        i += 1;
        if i == 50 {
            b.child.kill().expect("SIGKILL B");
            b.child.wait().expect("reap B");
        }
        let want = format!("k{i}");
        match http
            .patch(&url_a)
            .json(&json!({"title": want}))
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => {
                let token = r
                    .headers()
                    .get("x-consistency-token")
                    .cloned()
                    .expect("token");
                let got = http
                    .get(&url_a)
                    .header("x-consistency-token", token)
                    .send()
                    .await;
                match got {
                    Ok(g) if g.status() == 200 => {
                        ok += 1;
                        if title(g.json().await.expect("json")) != want {
                            stale += 1;
                        }
                    }
                    _ => failed += 1,
                }
            }
            _ => failed += 1,
        }
    }
    println!("after killing B: {ok} write+read pairs on A, {failed} failed, {stale} stale");
    assert!(i > 50, "B was killed during the load");
    assert_eq!((failed, stale), (0, 0));
    assert!(ok > 50);
}
