//! The cache's promises under the conditions that break them, on the real
//! primary, replicas and Redis: fills whose snapshot predates a write,
//! token holders joining tokenless loads, forged tokens, versions across a
//! Redis restart, versions lost with a failed-over Redis, lost messages,
//! cancelled writes and commits, a stopped replica, two databases on one
//! Redis, and entries over the size bound.

use app::{AppConfig, AppState};
use axum::body::Body;
use entity::prelude::*;
use entity::story;
use http::{Method, Request, StatusCode};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use seaway::prelude::*;
use seaway::{CacheOutcome, Db, Scope};
use seaway_tests::bookkeeping::{bookkeeping, set_back};
use seaway_tests::story::replicated_story;
use seaway_tests::{TestDb, cluster, wait_for};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// Story `id`'s title through the cache from a replica, in a fresh scope
/// (or in `scope`), with a filter that makes the query take `slow`.
async fn read(
    db: &Db,
    id: i64,
    slow: Option<f64>,
    scope: Option<Scope>,
) -> (Option<String>, CacheOutcome) {
    let scope = scope.unwrap_or_default();
    let mut q = Story::find_by_id(id);
    if let Some(s) = slow {
        q = q.filter(Expr::cust(format!("pg_sleep({s})::text = ''")));
    }
    let m = scope
        .run(async { q.using_replica().cached().one(db).await.expect("read") })
        .await;
    (
        m.map(|m| m.title),
        scope.state().last_cache().expect("outcome"),
    )
}

async fn set_title(db: &Db, id: i64, t: &str) -> Scope {
    let scope = Scope::new();
    scope
        .run(async {
            Story::update_many()
                .col_expr(story::Column::Title, Expr::value(t))
                .filter(story::Column::Id.eq(id))
                .exec(db)
                .await
                .expect("update")
        })
        .await;
    scope
}

/// The primary's position now.
async fn primary_lsn(t: &TestDb) -> String {
    let row = t
        .primary()
        .await
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_current_wal_lsn()::text AS l",
        ))
        .await
        .expect("lsn")
        .expect("row");
    row.try_get("", "l").expect("l")
}

/// Waits until every replica has replayed `lsn`.
async fn replayed(t: &TestDb, lsn: &str) {
    for i in 0..t.replica_urls.len() {
        let r = t.replica(i).await;
        let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn AS ok");
        wait_for(Duration::from_secs(10), || async {
            r.query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                sql.clone(),
            ))
            .await
            .ok()
            .flatten()
            .and_then(|row| row.try_get::<bool>("", "ok").ok())
            .unwrap_or(false)
        })
        .await
        .expect("replayed");
    }
}

/// A replica query whose snapshot is taken before a write and which returns
/// after the replica replayed it must not be stored: the replica's position
/// when the query returns says nothing about its snapshot.
#[tokio::test]
async fn a_replica_read_whose_snapshot_predates_a_write_is_never_stored() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let t = c.fresh_db("snapshot").await;
    let db = Db::connect(t.config().max_replica_lag(Duration::from_secs(60)).build())
        .await
        .expect("db");
    let id = replicated_story(&t, &db, "v0").await;
    // a lag shorter than the query
    c.run(&["lag", "150", "1"]);
    c.run(&["lag", "150", "2"]);
    let mut stale = 0;
    for round in 1..=20 {
        let want = format!("v{round}");
        set_title(&db, id, &want).await;
        // a tokenless read, at once: its snapshot predates the write, and it
        // returns after the replica replayed it; that answer is refused, and
        // the read is made again where the write is
        let (seen, _) = read(&db, id, Some(0.4), None).await;
        assert_eq!(
            seen.as_deref(),
            Some(want.as_str()),
            "round {round}: the replica's pre-write answer was read again"
        );
        replayed(&t, &primary_lsn(&t).await).await;
        let (after, outcome) = read(&db, id, Some(0.4), None).await;
        if after.as_deref() != Some(want.as_str()) {
            stale += 1;
            eprintln!("round {round}: after catch-up {after:?} ({outcome:?}), wanted {want}");
        }
    }
    let s = db.cache_stats().await;
    println!(
        "20 rounds: {stale} stale reads after catch-up, {} fills refused for lag, {} for a race \
         (the write's own confirmation from Redis landing after the load began), {} read again",
        s.refused_lag, s.refused_race, s.refreshed
    );
    assert_eq!(stale, 0, "no stale fill was stored");
    assert!(
        s.refused_lag + s.refused_race >= 20,
        "each pre-write snapshot was refused"
    );
    c.reset();
}

/// A request with a token that arrives while a tokenless load of the same
/// query reads a lagging replica gets the write, not the load's rows.
#[tokio::test]
async fn a_token_holder_joining_a_tokenless_flight_gets_the_write() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let t = c.fresh_db("joiner").await;
    let db = Db::connect(t.config().max_replica_lag(Duration::from_secs(60)).build())
        .await
        .expect("db");
    let id = replicated_story(&t, &db, "old").await;
    c.run(&["lag", "2000", "1"]);
    c.run(&["lag", "2000", "2"]);
    let writer = set_title(&db, id, "new").await;
    let token = db.token_for(writer.state()).expect("token");
    let tokenless = {
        let db = db.clone();
        tokio::spawn(async move { read(&db, id, Some(0.5), None).await })
    };
    wait_for(Duration::from_secs(2), || async {
        db.loads_in_flight() > 0
    })
    .await
    .expect("the tokenless load is in flight");
    let scope = db.verify_token(&token).await.expect("our token");
    let (seen, _) = read(&db, id, Some(0.5), Some(scope)).await;
    assert_eq!(
        seen.as_deref(),
        Some("new"),
        "the token holder gets the write"
    );
    let (after, _) = tokenless.await.expect("join");
    // the lagging replica's answer was behind this instance's own write:
    // refused, and read again where the write is
    assert_eq!(
        after.as_deref(),
        Some("new"),
        "the tokenless read's lagging answer was read again"
    );
    assert!(db.cache_stats().await.refreshed >= 1, "read again");
    c.reset();
}

async fn instance(t: &TestDb, cfg: seaway::ConfigBuilder) -> (axum::Router, Db) {
    let _ = t;
    let state: AppState = app::connect(&AppConfig {
        seaway: cfg.build(),
        listen_addr: "127.0.0.1:0".parse().expect("addr"),
    })
    .await
    .expect("connect");
    let db = state.db.clone();
    (app::router(state), db)
}

async fn get(r: &axum::Router, path: &str, token: Option<&str>) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder().method(Method::GET).uri(path);
    if let Some(t) = token {
        req = req.header("x-consistency-token", t);
    }
    let resp = r
        .clone()
        .oneshot(req.body(Body::empty()).expect("req"))
        .await
        .expect("resp");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

/// A token the service did not issue moves no read to the primary and puts
/// nothing in the cache: each is a 400. A token of another cluster, signed
/// with the same secret, is refused too.
#[tokio::test]
async fn forged_tokens_are_refused_and_move_no_load() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("forged").await;
    let secret = "f".repeat(40);
    let (r, db) = instance(&t, t.config().token_secret(&secret)).await;
    let id = replicated_story(&t, &db, "s").await;
    let before = db.routing_stats();
    let stats_before = db.cache_stats().await;
    let mut refused = 0;
    for n in 0..100u32 {
        let forged = match n % 4 {
            0 => format!("FFFFFFF0/{n:08X}"),
            1 => format!("s1.{}", "f".repeat(76)),
            2 => format!(
                "s1.01000000000000000000000000ffffffff{n:08x}{}",
                "0".repeat(32)
            ),
            _ => "0/0".to_owned(),
        };
        let (status, body) = get(&r, &format!("/stories/{id}"), Some(&forged)).await;
        if status == StatusCode::BAD_REQUEST {
            assert_eq!(body["error"]["field"], "X-Consistency-Token");
            refused += 1;
        }
    }
    let after = db.routing_stats();
    println!(
        "forged tokens: {refused} of 100 refused; primary reads {} -> {}",
        before.primary_reads, after.primary_reads
    );
    assert_eq!(refused, 100);
    assert_eq!(
        after.primary_reads, before.primary_reads,
        "no forged token moved a read to the primary"
    );
    let stats = db.cache_stats().await;
    assert_eq!(
        stats.loads, stats_before.loads,
        "nothing was loaded, so nothing stored"
    );

    // another cluster, the same secret: the signature holds, the cluster does not
    let Some(other) = &c.other_primary else {
        panic!("the cluster script starts a second primary")
    };
    let o = Db::connect(
        seaway::Config::builder()
            .database_url(other)
            .token_secret(&secret)
            .build(),
    )
    .await
    .expect("other");
    let scope = Scope::new();
    scope
        .run(async {
            o.execute_unprepared("CREATE TABLE IF NOT EXISTS t (a int); INSERT INTO t VALUES (1)")
                .await
                .expect("write")
        })
        .await;
    let foreign = o.token_for(scope.state()).expect("token");
    assert_eq!(
        db.verify_token(&foreign).await.err(),
        Some(seaway::TokenError::OtherCluster)
    );
    let (status, _) = get(&r, &format!("/stories/{id}"), Some(&foreign)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// A Redis restored from a snapshot holds old versions and old entries: no
/// instance may take an old entry as valid, then or after as many writes as
/// the old versions counted.
#[tokio::test]
async fn a_redis_restart_never_makes_an_old_entry_valid() {
    let Some(c) = cluster() else { return };
    if !c.single_redis() {
        return;
    }
    let _g = c.exclusive().await;
    let t = c.fresh_db("epoch").await;
    // B reads through L2 only, so that what Redis holds is what it serves
    let a = Db::connect(t.config().build()).await.expect("a");
    let b = Db::connect(t.config().l1_max_bytes(0).build())
        .await
        .expect("b");
    let id = replicated_story(&t, &a, "old").await;
    assert_eq!(read(&a, id, None, None).await.0.as_deref(), Some("old"));
    wait_for(Duration::from_secs(2), || async {
        read(&b, id, None, None).await.1 == CacheOutcome::HitL2
    })
    .await
    .expect("B serves it from L2");
    // a snapshot with the entry valid in it
    let client = redis::Client::open(t.redis_url.as_str()).expect("redis");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let _: () = redis::cmd("SAVE")
        .query_async(&mut conn)
        .await
        .expect("save");
    drop(conn);
    set_title(&a, id, "new").await;
    for i in 0..10 {
        // more writes than the old versions counted
        set_title(&a, id, &format!("new{i}")).await;
    }
    set_title(&a, id, "newest").await;
    replayed(&t, &primary_lsn(&t).await).await;
    c.run(&["stop-redis"]);
    c.run(&["start-redis"]); // loads the snapshot: the old entry and old versions
    let mut stale = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        for db in [&a, &b] {
            if read(db, id, None, None).await.0.as_deref() == Some("old") {
                stale += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // and as many writes again after it
    for i in 0..12 {
        set_title(&a, id, &format!("after{i}")).await;
    }
    replayed(&t, &primary_lsn(&t).await).await;
    for db in [&a, &b] {
        wait_for(Duration::from_secs(3), || async {
            read(db, id, None, None).await.0.as_deref() == Some("after11")
        })
        .await
        .expect("the last write is seen");
    }
    println!("restored snapshot: {stale} reads of the old entry");
    assert_eq!(stale, 0, "no instance served the snapshot's old entry");
    let _ = std::fs::remove_file(format!(
        "{}/../target/seaway-cluster/redis/dump.rdb",
        env!("CARGO_MANIFEST_DIR")
    ));
    c.reset();
}

/// Measures how long after a write on A its value is first read on B.
async fn seen_on_b_after(a: &Db, b: &Db, id: i64, want: &str) -> Duration {
    let write = Instant::now();
    set_title(a, id, want).await;
    loop {
        if read(b, id, None, None).await.0.as_deref() == Some(want) {
            return write.elapsed();
        }
        assert!(
            write.elapsed() < Duration::from_secs(10),
            "B never saw {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn redis_cmd(t: &TestDb, args: &[&str]) {
    let client = redis::Client::open(t.redis_url.as_str()).expect("redis");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd.query_async(&mut conn).await.expect("redis command");
}

/// Redis loses the version of a write after instances heard it, as a
/// replica that takes over from a master killed before replicating it does
/// (simulated: the namespace's counter and tag versions set back to what
/// they were before the write). The next write must still get a version
/// above the lost one: B, which heard the lost version, must see it, not
/// keep serving the entry it loaded in between.
#[tokio::test]
async fn a_lost_version_never_makes_a_later_write_invalidate_nothing() {
    let Some(c) = cluster() else { return };
    if !c.single_redis() {
        return;
    }
    let _g = c.exclusive().await;
    let t = c.fresh_db("lostversion").await;
    let a = Db::connect(t.config().build()).await.expect("a");
    let b = Db::connect(t.config().build()).await.expect("b");
    let id = replicated_story(&t, &a, "v0").await;
    let client = redis::Client::open(t.redis_url.as_str()).expect("redis");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    // the counter and the tag versions and LSNs, as Redis holds them now
    let before = bookkeeping(&mut conn, &t.prefix).await;

    set_title(&a, id, "v1").await;
    replayed(&t, &primary_lsn(&t).await).await;
    wait_for(Duration::from_secs(2), || async {
        read(&b, id, None, None).await.0.as_deref() == Some("v1")
    })
    .await
    .expect("B heard v1 and loaded it");
    assert_eq!(read(&b, id, None, None).await.1, CacheOutcome::HitL1);

    // the write's versions lost, as with a failover before replication
    set_back(&mut conn, &t.prefix, &before).await;

    set_title(&a, id, "v2").await;
    replayed(&t, &primary_lsn(&t).await).await;
    let seen = wait_for(Duration::from_secs(2), || async {
        read(&b, id, None, None).await.0.as_deref() == Some("v2")
    })
    .await;
    let (now, outcome) = read(&b, id, None, None).await;
    println!("after the lost version: B reads {now:?} ({outcome:?})");
    assert!(
        seen.is_ok(),
        "the write after the lost version invalidated nothing: B still serves {now:?}"
    );
    c.reset();
}

/// A PUBLISH refused by an ACL: A's invalidations never reach B's channel,
/// and B's own heartbeat goes unheard: B counts the bus as lost and its
/// entries live at most the short TTL.
#[tokio::test]
async fn a_deaf_instance_sees_writes_within_the_short_ttl() {
    let Some(c) = cluster() else { return };
    if !c.single_redis() {
        return;
    }
    let _g = c.exclusive().await;
    let t = c.fresh_db("deaf").await;
    let a = Db::connect(t.config().build()).await.expect("a");
    let b = Db::connect(t.config().build()).await.expect("b");
    let id = replicated_story(&t, &a, "v0").await;
    let bound = seaway::settings::SHORT_TTL + Duration::from_secs(1);

    read(&b, id, None, None).await;
    redis_cmd(&t, &["ACL", "SETUSER", "default", "-publish"]).await;
    let took = seen_on_b_after(&a, &b, id, "acl").await;
    let down = wait_for(Duration::from_secs(2), || async {
        !b.health().await.cache.bus_healthy
    })
    .await;
    redis_cmd(&t, &["ACL", "SETUSER", "default", "+publish"]).await;
    println!(
        "PUBLISH denied: B saw the write after {took:?}; bus shown down: {}",
        down.is_ok()
    );
    assert!(took <= bound, "B saw the write after {took:?}");
    assert!(down.is_ok(), "/health showed the bus down");
    wait_for(Duration::from_secs(5), || async {
        b.health().await.cache.bus_healthy
    })
    .await
    .expect("the bus comes back");

    read(&b, id, None, None).await;
    c.run(&["pause-redis"]);
    let took = seen_on_b_after(&a, &b, id, "paused").await;
    let down = !b.health().await.cache.bus_healthy;
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(took)).await;
    c.run(&["resume-redis"]);
    println!("Redis paused: B saw the write after {took:?}; bus shown down: {down}");
    assert!(took <= bound, "B saw the write after {took:?}");
    assert!(down, "/health showed the bus down");
    c.reset();
}

/// A write whose request is dropped while the work after it runs (a client
/// that disconnected) still reaches every instance. Redis is paused so that
/// the post-write work is in progress when the request goes; B reads
/// through L2 only, so it sees the write only if A's invalidation reached
/// Redis.
#[tokio::test]
async fn a_write_whose_client_goes_away_still_invalidates_every_instance() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let t = c.fresh_db("cancel").await;
    let a = Db::connect(t.config().build()).await.expect("a");
    let b = Db::connect(t.config().l1_max_bytes(0).build())
        .await
        .expect("b");
    let id = replicated_story(&t, &a, "v0").await;
    // the client goes away at each of these moments of its request
    for (round, after_ms) in [0u64, 1, 2, 4, 8, 50].into_iter().enumerate() {
        let before = format!("v{round}");
        wait_for(Duration::from_secs(5), || async {
            b.health().await.cache.bus_healthy
                && read(&b, id, None, None).await == (Some(before.clone()), CacheOutcome::HitL2)
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: B serves {before} from L2"));
        c.run(&["pause-redis"]);
        let want = format!("v{}", round + 1);
        let write = {
            let (a, want) = (a.clone(), want.clone());
            async move { set_title(&a, id, &want).await }
        };
        let _ = tokio::time::timeout(Duration::from_millis(after_ms), write).await;
        // whether the write reached PostgreSQL before its client went
        let committed = wait_for(Duration::from_millis(500), || async {
            Story::find_by_id(id)
                .one(a.primary())
                .await
                .ok()
                .flatten()
                .map(|m| m.title)
                == Some(want.clone())
        })
        .await
        .is_ok();
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.run(&["resume-redis"]);
        if !committed {
            // nothing to invalidate: write it whole for the next round
            set_title(&a, id, &want).await;
        }
        replayed(&t, &primary_lsn(&t).await).await;
        // once B's bus is back it reads Redis again: it sees the write only
        // if A's invalidation reached Redis
        wait_for(Duration::from_secs(5), || async {
            b.health().await.cache.bus_healthy
        })
        .await
        .expect("B's bus is back");
        for (name, db) in [("A", &a), ("B", &b)] {
            wait_for(Duration::from_secs(2), || async {
                read(db, id, None, None).await.0.as_deref() == Some(want.as_str())
            })
            .await
            .unwrap_or_else(|_| panic!("round {round} (gone after {after_ms} ms, committed: {committed}): {name} still serves {before}"));
        }
        println!(
            "round {round}: client gone after {after_ms} ms, write committed: {committed}, seen on both"
        );
    }
    c.reset();
}

/// A transaction whose `commit()` future is dropped while COMMIT runs (a
/// client gone, a timeout) still commits: what it moved is invalidated all
/// the same, and the instance's L1 does not keep the old row. COMMIT is made
/// slow on purpose (a deferred constraint trigger that sleeps 300 ms) and the
/// future is dropped after 50 ms, inside it.
#[tokio::test]
async fn a_transaction_whose_commit_is_dropped_still_invalidates() {
    use sea_orm::TransactionTrait;
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let t = c.fresh_db("commitdrop").await;
    let a = Db::connect(t.config().build()).await.expect("a");
    a.primary()
        .execute_unprepared(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$; \
             CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE ON stories \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()",
        )
        .await
        .expect("trigger");
    let id = replicated_story(&t, &a, "v0").await;
    for round in 0..3 {
        let before = format!("v{round}");
        let want = format!("v{}", round + 1);
        wait_for(Duration::from_secs(5), || async {
            read(&a, id, None, None).await == (Some(before.clone()), CacheOutcome::HitL1)
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: {before} cached in L1"));
        let txn = a.begin().await.expect("begin");
        Story::update_many()
            .col_expr(story::Column::Title, Expr::value(want.as_str()))
            .filter(story::Column::Id.eq(id))
            .exec(&txn)
            .await
            .expect("update");
        let dropped = tokio::time::timeout(Duration::from_millis(50), txn.commit())
            .await
            .is_err();
        assert!(dropped, "round {round}: the commit outlasts 50 ms");
        wait_for(Duration::from_secs(2), || async {
            Story::find_by_id(id)
                .one(a.primary())
                .await
                .ok()
                .flatten()
                .map(|m| m.title)
                == Some(want.clone())
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: the commit reached the primary"));
        replayed(&t, &primary_lsn(&t).await).await;
        wait_for(Duration::from_secs(2), || async {
            read(&a, id, None, None).await.0.as_deref() == Some(want.as_str())
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: the cache still serves {before}"));
    }
    c.reset();
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

/// A replica stopped (SIGSTOP) under load: no read waits past the statement
/// timeout and a second, nothing hangs afterwards, no load entry leaks.
#[tokio::test]
async fn a_stopped_replica_holds_no_read_past_the_statement_timeout() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let t = c.fresh_db("sigstop").await;
    let timeout = Duration::from_secs(1);
    // random balancing: round robin under this alternating mix would send
    // every uncached read to the same replica
    let db = Db::connect(
        t.config()
            .statement_timeout(timeout)
            .strategy(seaway::Strategy::Random)
            .build(),
    )
    .await
    .expect("db");
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(replicated_story(&t, &db, &format!("s{i}")).await);
    }
    let ids = Arc::new(ids);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (db, ids, stop) = (db.clone(), ids.clone(), stop.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let id = ids[(n as usize + w) % ids.len()];
                    let t0 = Instant::now();
                    let r = if n.is_multiple_of(2) {
                        Story::find_by_id(id)
                            .using_replica()
                            .one(&db)
                            .await
                            .map(|_| ())
                    } else {
                        // distinct keys: cached loads that miss
                        Story::find()
                            .filter(story::Column::Id.eq(id))
                            .limit(1 + n % 50)
                            .using_replica()
                            .cached()
                            .all(&db)
                            .await
                            .map(|_| ())
                    };
                    lat.push((t0.elapsed(), r.is_ok()));
                }
                lat
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.run(&["pause-replica", "1"]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    c.run(&["resume-replica", "1"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    let joined = tokio::time::timeout(Duration::from_secs(10), async {
        for w in workers {
            all.extend(w.await.expect("worker"));
        }
    })
    .await;
    assert!(
        joined.is_ok(),
        "a read still hangs 10 s after the load ended"
    );
    let failed = all.iter().filter(|(_, ok)| !ok).count();
    let mut lat: Vec<Duration> = all.iter().map(|(d, _)| *d).collect();
    lat.sort();
    let (p99, max) = (pct(&lat, 0.99), *lat.last().expect("reads"));
    println!(
        "replica stopped 4 s under load: {} reads, {failed} failed, p50 {:?}, p99 {p99:?}, max {max:?}, loads in flight after {}",
        lat.len(),
        pct(&lat, 0.5),
        db.loads_in_flight()
    );
    assert!(p99 < timeout + Duration::from_secs(1), "p99 {p99:?}");
    assert!(
        max < timeout + Duration::from_secs(1),
        "the slowest read took {max:?}"
    );
    let held = lat.iter().filter(|d| **d >= timeout).count();
    assert!(
        held > 0,
        "no read met the stopped replica: the fault was not exercised"
    );
    assert_eq!(failed, 0, "no read failed");
    assert_eq!(db.loads_in_flight(), 0, "no load entry leaked");
    c.reset();
}

/// Two deployments on two databases, one Redis, the default prefix: each
/// serves its own rows for the same SQL.
#[tokio::test]
async fn two_databases_on_one_redis_never_share_an_entry() {
    let Some(c) = cluster() else { return };
    if !c.single_redis() {
        return;
    }
    let _g = c.shared().await;
    let t1 = c.fresh_db("ns_one").await;
    let t2 = c.fresh_db("ns_two").await;
    let one = Db::connect(
        t1.config()
            .key_prefix(seaway::settings::DEFAULT_KEY_PREFIX)
            .build(),
    )
    .await
    .expect("one");
    let two = Db::connect(
        t2.config()
            .key_prefix(seaway::settings::DEFAULT_KEY_PREFIX)
            .build(),
    )
    .await
    .expect("two");
    let id1 = replicated_story(&t1, &one, "from one").await;
    let id2 = replicated_story(&t2, &two, "from two").await;
    assert_eq!(id1, id2, "the same id, so the same SQL and values");
    assert_eq!(
        read(&one, id1, None, None).await.0.as_deref(),
        Some("from one")
    );
    let (seen, outcome) = read(&two, id2, None, None).await;
    assert_eq!(seen.as_deref(), Some("from two"), "served from {outcome:?}");
    assert_eq!(outcome, CacheOutcome::Miss);
}

/// A result over the size bound is served, kept out of Redis, and counted.
#[tokio::test]
async fn an_entry_over_the_size_bound_is_served_but_not_stored_in_l2() {
    let Some(c) = cluster() else { return };
    if !c.single_redis() {
        return;
    }
    let _g = c.shared().await;
    let t = c.fresh_db("oversize").await;
    let db = Db::connect(t.config().max_entry_bytes(500).build())
        .await
        .expect("db");
    for i in 0..20 {
        replicated_story(&t, &db, &format!("a rather long title number {i:04}")).await;
    }
    let rows = Story::find()
        .using_replica()
        .cached()
        .all(&db)
        .await
        .expect("read");
    assert_eq!(rows.len(), 20, "served");
    let small = Story::find()
        .limit(1)
        .using_replica()
        .cached()
        .all(&db)
        .await
        .expect("read");
    assert_eq!(small.len(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = redis::Client::open(t.redis_url.as_str()).expect("redis");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*:q:*", t.prefix))
        .query_async(&mut conn)
        .await
        .expect("keys");
    let stats = db.cache_stats().await;
    println!(
        "over the bound: {} entries in Redis, oversize {}",
        keys.len(),
        stats.oversize
    );
    assert_eq!(
        keys.len(),
        1,
        "only the small result went to Redis: {keys:?}"
    );
    assert_eq!(stats.oversize, 1);
}
