//! The README's quick start, as a newcomer runs it: the service binary with no
//! environment at all, on the embedded SQLite default, answering /health, one
//! write and one read, and stopping cleanly on SIGTERM.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// 127.0.0.1:3000 (the default) when it is free, else another free port
/// given through LISTEN_ADDR.
fn address() -> (String, Option<String>) {
    if TcpListener::bind("127.0.0.1:3000").is_ok() {
        return ("127.0.0.1:3000".into(), None);
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    (addr.clone(), Some(addr))
}

#[tokio::test]
async fn the_service_runs_on_the_embedded_default_with_no_environment() {
    let dir = std::env::temp_dir().join(format!("seaway-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (addr, listen) = address();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seaway-app"));
    cmd.current_dir(&dir)
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    if let Some(l) = &listen {
        cmd.env("LISTEN_ADDR", l);
    }
    let mut child = cmd.spawn().expect("start the service");
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let start = Instant::now();
    let health = loop {
        if let Ok(r) = http.get(format!("{base}/health")).send().await {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the service did not answer /health"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = health.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    assert!(
        dir.join("data/seaway.db").exists(),
        "the SQLite file is under ./data/"
    );

    let created = http
        .post(format!("{base}/profiles"))
        .json(&serde_json::json!({"username": "newcomer", "display_name": "New"}))
        .send()
        .await
        .expect("post");
    assert_eq!(created.status(), 201);
    let token = created
        .headers()
        .get("x-consistency-token")
        .cloned()
        .expect("token");
    let id = created.json::<serde_json::Value>().await.expect("json")["id"]
        .as_i64()
        .expect("id");
    let read = http
        .get(format!("{base}/profiles/{id}"))
        .header("x-consistency-token", token)
        .send()
        .await
        .expect("get");
    assert_eq!(read.status(), 200);
    assert!(read.headers().contains_key("x-db-route"));
    assert_eq!(
        read.json::<serde_json::Value>().await.expect("json")["username"],
        "newcomer"
    );

    let term = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(term.success());
    let status = child.wait().expect("wait");
    assert!(
        status.success(),
        "graceful shutdown on SIGTERM exits 0, got {status:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
