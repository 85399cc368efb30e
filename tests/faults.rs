//! Faults under load: two service instances (in-process routers, each with its
//! own `Db`, pools and L1, sharing the primary, the replicas and Redis) take a
//! steady mix of writes and reads from the test while a replica stops, Redis
//! stops, replication lags, or one instance dies. Each test prints its counts
//! and asserts the zeros. Bounded: every load loop runs for a fixed time.

use app::{AppConfig, AppState};
use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode};
use seaway_tests::{Cluster, TestDb, cluster};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const WORKERS: usize = 6;

async fn instance(t: &TestDb) -> (Router, seaway::Db) {
    let cfg = AppConfig {
        seaway: t
            .config()
            .redis_timeouts(Duration::from_millis(100), Duration::from_millis(500))
            .build(),
        listen_addr: "127.0.0.1:0".parse().expect("addr"),
    };
    let state: AppState = app::connect(&cfg).await.expect("connect");
    let db = state.db.clone();
    (app::router(state), db)
}

/// One request; `None` on a transport failure (never expected).
async fn send(
    r: &Router,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, Value, Option<String>) {
    let mut req = Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    if let Some(t) = token {
        req = req.header("x-consistency-token", t);
    }
    let b = body.map_or(Body::empty(), |v| Body::from(v.to_string()));
    let resp = r
        .clone()
        .oneshot(req.body(b).expect("req"))
        .await
        .expect("resp");
    let status = resp.status();
    let token = resp
        .headers()
        .get("x-consistency-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        token,
    )
}

#[derive(Default, Debug)]
struct Counts {
    requests: AtomicU64,
    failed_reads: AtomicU64,
    failed_writes: AtomicU64,
    stale_token_reads: AtomicU64,
}

impl Counts {
    fn print(&self, what: &str) {
        println!(
            "{what}: {} requests, {} failed reads, {} failed writes, {} stale reads with a token",
            self.requests.load(Relaxed),
            self.failed_reads.load(Relaxed),
            self.failed_writes.load(Relaxed),
            self.stale_token_reads.load(Relaxed)
        );
    }
    fn assert_zeros(&self) {
        assert_eq!(self.failed_reads.load(Relaxed), 0, "failed reads");
        assert_eq!(self.failed_writes.load(Relaxed), 0, "failed writes");
        assert_eq!(
            self.stale_token_reads.load(Relaxed),
            0,
            "stale reads with a token"
        );
        assert!(self.requests.load(Relaxed) > 100, "the load ran");
    }
}

/// Creates one story per worker; returns their ids.
async fn stories(r: &Router) -> Vec<i64> {
    let (_, p, _) = send(
        r,
        Method::POST,
        "/profiles",
        Some(json!({"username": "author", "display_name": "A"})),
        None,
    )
    .await;
    let author = p["id"].as_i64().expect("author");
    let mut ids = Vec::new();
    for w in 0..WORKERS {
        let (s, b, _) = send(r, Method::POST, "/stories", Some(json!({"author_id": author, "title": format!("w{w}-0"), "body": "b", "published": true})), None).await;
        assert_eq!(s, StatusCode::CREATED);
        ids.push(b["id"].as_i64().expect("id"));
    }
    ids
}

/// Workers write `w{i}-{seq}` to their story on a random live instance, then
/// read it back with the token on the other; plus a listing read without one.
/// Returns each worker's last written title.
async fn load(
    instances: Arc<Vec<(Router, Arc<std::sync::atomic::AtomicBool>)>>,
    ids: &[i64],
    run_for: Duration,
    counts: Arc<Counts>,
) -> Vec<String> {
    let tasks: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(w, &id)| {
            let instances = instances.clone();
            let counts = counts.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let mut seq = 0u64;
                let mut last = format!("w{w}-0");
                while start.elapsed() < run_for {
                    let live: Vec<&Router> = instances
                        .iter()
                        .filter(|(_, up)| up.load(Relaxed))
                        .map(|(r, _)| r)
                        .collect();
                    let pick = |k: u64| live[(k as usize + w) % live.len()];
                    seq += 1;
                    let title = format!("w{w}-{seq}");
                    let (s, _, token) = send(
                        pick(seq),
                        Method::PATCH,
                        &format!("/stories/{id}"),
                        Some(json!({"title": title})),
                        None,
                    )
                    .await;
                    counts.requests.fetch_add(1, Relaxed);
                    if s != StatusCode::OK {
                        counts.failed_writes.fetch_add(1, Relaxed);
                        eprintln!("write failed: {s}");
                        continue;
                    }
                    last = title.clone();
                    let (s, body, _) = send(
                        pick(seq + 1),
                        Method::GET,
                        &format!("/stories/{id}"),
                        None,
                        token.as_deref(),
                    )
                    .await;
                    counts.requests.fetch_add(1, Relaxed);
                    if s != StatusCode::OK {
                        counts.failed_reads.fetch_add(1, Relaxed);
                        eprintln!("read failed: {s} {body}");
                    } else if body["title"] != title.as_str() {
                        counts.stale_token_reads.fetch_add(1, Relaxed);
                        eprintln!(
                            "stale read with a token: wanted {title}, got {}",
                            body["title"]
                        );
                    }
                    let (s, body, _) = send(
                        pick(seq),
                        Method::GET,
                        "/stories?published=true&limit=20",
                        None,
                        None,
                    )
                    .await;
                    counts.requests.fetch_add(1, Relaxed);
                    if s != StatusCode::OK {
                        counts.failed_reads.fetch_add(1, Relaxed);
                        eprintln!("listing failed: {s} {body}");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                last
            })
        })
        .collect();
    let mut lasts = Vec::new();
    for t in tasks {
        lasts.push(t.await.expect("worker"));
    }
    lasts
}

/// After the fault: every instance's reads without a token reach each
/// story's last value within `limit`, and never go back afterwards.
async fn converge(
    instances: &[(Router, Arc<std::sync::atomic::AtomicBool>)],
    ids: &[i64],
    lasts: &[String],
    limit: Duration,
) {
    for (r, up) in instances {
        if !up.load(Relaxed) {
            continue;
        }
        for (id, last) in ids.iter().zip(lasts) {
            let start = Instant::now();
            loop {
                let (_, b, _) = send(r, Method::GET, &format!("/stories/{id}"), None, None).await;
                if b["title"] == last.as_str() {
                    break;
                }
                assert!(
                    start.elapsed() < limit,
                    "story {id} still {} after {limit:?}, wanted {last}",
                    b["title"]
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for _ in 0..5 {
            for (id, last) in ids.iter().zip(lasts) {
                let (_, b, _) = send(r, Method::GET, &format!("/stories/{id}"), None, None).await;
                assert_eq!(b["title"], last.as_str(), "story {id} regressed");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

type Instances = Arc<Vec<(Router, Arc<std::sync::atomic::AtomicBool>)>>;

async fn setup(c: &Cluster, name: &str) -> (TestDb, Instances, Vec<seaway::Db>, Vec<i64>) {
    let t = c.fresh_db(name).await;
    let (a, da) = instance(&t).await;
    let (b, db) = instance(&t).await;
    let ids = stories(&a).await;
    // let the replicas have the stories before the load starts
    tokio::time::sleep(Duration::from_millis(300)).await;
    let up = || Arc::new(std::sync::atomic::AtomicBool::new(true));
    (t, Arc::new(vec![(a, up()), (b, up())]), vec![da, db], ids)
}

#[tokio::test]
async fn a_replica_stopped_for_five_seconds_fails_nothing() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let (_t, inst, dbs, ids) = setup(&c, "fault_replica").await;
    let counts = Arc::new(Counts::default());
    let load_task = {
        let (inst, ids, counts) = (inst.clone(), ids.clone(), counts.clone());
        tokio::spawn(async move { load(inst, &ids, Duration::from_secs(8), counts).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.run(&["stop-replica", "1"]);
    let down = seaway_tests::wait_for(Duration::from_secs(5), || async {
        !dbs[0].health().await.replicas[0].healthy
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(down.unwrap_or_default())).await;
    c.run(&["start-replica", "1"]);
    let lasts = load_task.await.expect("load");
    counts.print("replica stopped 5 s");
    counts.assert_zeros();
    assert!(down.is_ok(), "/health showed the replica down");
    for db in &dbs {
        seaway_tests::wait_for(Duration::from_secs(10), || async {
            db.health().await.replicas[0].healthy
        })
        .await
        .expect("health recovers");
    }
    converge(&inst, &ids, &lasts, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn redis_stopped_for_five_seconds_fails_nothing_and_leaves_nothing_stale() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let (_t, inst, dbs, ids) = setup(&c, "fault_redis").await;
    let counts = Arc::new(Counts::default());
    let load_task = {
        let (inst, ids, counts) = (inst.clone(), ids.clone(), counts.clone());
        tokio::spawn(async move { load(inst, &ids, Duration::from_secs(8), counts).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.run(&["stop-redis"]);
    // seen by each instance: a failed call, or the bus gone (then L2 is not
    // even asked; over TLS the reset arrives first)
    let started = std::time::Instant::now();
    let seen = seaway_tests::wait_for(Duration::from_secs(4), || async {
        let mut all = true;
        for db in &dbs {
            all &= !db.cache_stats().await.l2_healthy;
        }
        all
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(started.elapsed())).await;
    c.run(&["start-redis"]);
    let lasts = load_task.await.expect("load");
    counts.print("redis stopped 5 s");
    counts.assert_zeros();
    assert!(seen.is_ok(), "both instances saw the outage (L2 unhealthy)");
    for db in &dbs {
        seaway_tests::wait_for(Duration::from_secs(5), || async {
            db.cache_stats().await.l2_healthy
        })
        .await
        .expect("L2 healthy again");
    }
    converge(&inst, &ids, &lasts, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn lag_for_five_seconds_never_breaks_a_token_and_converges() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let (_t, inst, _dbs, ids) = setup(&c, "fault_lag").await;
    let counts = Arc::new(Counts::default());
    c.run(&["lag", "1000", "1"]);
    c.run(&["lag", "1000", "2"]);
    let lasts = load(inst.clone(), &ids, Duration::from_secs(5), counts.clone()).await;
    counts.print("lag 1000 for 5 s");
    counts.assert_zeros();
    // tokenless reads reach the last value within lag + 1 s, and stay there
    converge(&inst, &ids, &lasts, Duration::from_secs(2)).await;
    c.reset();
}

#[tokio::test]
async fn one_instance_dies_and_the_other_keeps_serving_coherently() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let (_t, inst, mut dbs, ids) = setup(&c, "fault_kill").await;
    let counts = Arc::new(Counts::default());
    let load_task = {
        let (inst, ids, counts) = (inst.clone(), ids.clone(), counts.clone());
        tokio::spawn(async move { load(inst, &ids, Duration::from_secs(4), counts).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    // B stops taking traffic mid-load (in process: its router stays alive; the
    // process-level kill is app/tests/processes.rs)
    inst[1].1.store(false, Relaxed);
    drop(dbs.pop());
    let lasts = load_task.await.expect("load");
    counts.print("one instance killed");
    counts.assert_zeros();
    converge(&inst, &ids, &lasts, Duration::from_secs(2)).await;
}

/// Replica pools saturated by slow reads (every connection of both pools
/// held by one `pg_sleep(4)` query, longer than a probe waits): the probes
/// have connections of their own, so the replicas stay healthy and reads do
/// not move to the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_replica_pool_is_not_a_dead_replica() {
    use entity::prelude::Story;
    use sea_orm::EntityTrait;
    use sea_orm::QueryFilter;
    use sea_orm::sea_query::Expr;
    use seaway::prelude::*;
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let t = c.fresh_db("saturated").await;
    let db = seaway::Db::connect(
        t.config()
            .pool(2, 2)
            // one reader per connection, none waiting for a pool
            .strategy(seaway::Strategy::LeastConnections)
            .health_check_interval(Duration::from_millis(100))
            .build(),
    )
    .await
    .expect("db");
    // one row, so that the filter sleeps (it runs per row)
    let author = seaway_tests::insert_profile(db.primary(), "saturating").await;
    seaway_tests::insert_story(db.primary(), author, "slow", true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    db.probe_now().await;
    let before = db.routing_stats();
    let started = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..4 {
        let db = db.clone();
        readers.push(tokio::spawn(async move {
            Story::find()
                .filter(Expr::cust("pg_sleep(4)::text = ''"))
                .using_replica()
                .all(&db)
                .await
                .is_ok()
        }));
    }
    let mut unhealthy_seen = 0;
    let mut checks = 0;
    while started.elapsed() < Duration::from_millis(3800) {
        let h = db.health().await;
        checks += 1;
        if h.replicas.iter().any(|r| !r.healthy) {
            unhealthy_seen += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ok = 0;
    for r in readers {
        ok += usize::from(r.await.expect("reader"));
    }
    let after = db.routing_stats();
    let primary = after.primary_reads - before.primary_reads;
    println!(
        "replica pools held for 4 s: {ok}/4 slow reads answered, {} on replicas, {primary} on the primary; {unhealthy_seen} of {checks} health checks saw an unhealthy replica",
        after.replica_reads - before.replica_reads
    );
    assert_eq!(ok, 4, "the slow reads answered");
    assert_eq!(unhealthy_seen, 0, "a busy pool marked a replica unhealthy");
    assert_eq!(primary, 0, "reads moved to the primary");
}

/// Every connection of the primary's pool held by a slow statement: `/health`
/// still answers 200 with the primary healthy and the service `degraded`
/// (its ping runs on a connection of its own), and `ok` once they finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_primary_pool_is_degraded_not_down() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("busy_primary").await;
    let cfg = AppConfig {
        seaway: t.config().pool(1, 2).build(),
        listen_addr: "127.0.0.1:0".parse().expect("addr"),
    };
    let state: AppState = app::connect(&cfg).await.expect("connect");
    let db = state.db.clone();
    let r = app::router(state);
    let (s, h, _) = send(&r, Method::GET, "/health", None, None).await;
    assert_eq!(
        (s, h["status"].as_str()),
        (StatusCode::OK, Some("ok")),
        "{h}"
    );
    use sea_orm::ConnectionTrait;
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                db.primary()
                    .execute_unprepared("SELECT pg_sleep(3)")
                    .await
                    .is_ok()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let (s, h, _) = send(&r, Method::GET, "/health", None, None).await;
    let took = started.elapsed();
    println!("primary pool held: /health {s} in {took:?}: {h}");
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["primary"]["healthy"], true, "{h}");
    assert!(
        took < Duration::from_secs(1),
        "/health waited for the pool: {took:?}"
    );
    for holder in holders {
        assert!(holder.await.expect("holder"), "the slow statements ran");
    }
    // (a connection goes back to the pool in a task of its own, after its
    // statement answered: over TLS that takes a moment)
    seaway_tests::wait_for(Duration::from_secs(2), || async {
        let (s, h, _) = send(&r, Method::GET, "/health", None, None).await;
        s == StatusCode::OK && h["status"] == "ok"
    })
    .await
    .expect("/health ok again once the pool is free");
}
