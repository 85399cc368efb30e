//! Routing against the real primary and two streaming replicas: automatic
//! and explicit routes, sticky scopes, consistency tokens, health, lag,
//! failover and balancing.

use entity::prelude::*;
use entity::profile;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Set,
    Statement, TransactionTrait,
};
use seaway::prelude::*;
use seaway::{Config, DEFAULT, DatabaseRouter, Db, Hints, Route, Scope, Strategy};
use seaway_tests::{cluster, insert_profile, wait_for};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// Reads `id` in a fresh scope and says from where.
async fn read_in_scope(db: &Db, id: i64) -> (bool, Option<Route>) {
    let scope = Scope::new();
    let found = scope
        .run(async {
            Profile::find_by_id(id)
                .one(db)
                .await
                .expect("read")
                .is_some()
        })
        .await;
    (found, scope.state().last_route())
}

fn is_replica(r: &Option<Route>) -> bool {
    matches!(r, Some(Route::Replica(_)))
}

#[tokio::test]
async fn plain_seaorm_reads_use_replicas_and_writes_the_primary() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let t = c.fresh_db("plain").await;
    let db = Db::connect(t.config().max_replica_lag(LONG).build())
        .await
        .expect("db");
    c.run(&["lag", "1000", "1"]);
    c.run(&["lag", "1000", "2"]);

    // A write through Db: a replica would refuse it.
    let id = insert_profile(&db, "written_through_db").await;
    let before = db.routing_stats();
    // A plain SeaORM read outside any scope goes to a lagging replica: no row yet.
    let (found, route) = read_in_scope(&db, id).await;
    assert!(!found, "the replica has not replayed the insert yet");
    assert!(is_replica(&route), "{route:?}");
    // The same read forced to the primary sees it.
    let fresh = db
        .with_primary(|db| async move { Profile::find_by_id(id).one(&db).await })
        .await
        .expect("read");
    assert!(fresh.is_some(), "with_primary reads the primary");
    let after = db.routing_stats();
    assert_eq!(after.replica_reads - before.replica_reads, 1);
    assert_eq!(after.primary_reads - before.primary_reads, 1);
    assert_eq!(after.writes, 1);

    // Transactions run on the primary: they see their own uncommitted row.
    let txn = db.begin().await.expect("begin");
    let tid = insert_profile(&txn, "in_txn").await;
    assert!(
        Profile::find_by_id(tid)
            .one(&txn)
            .await
            .expect("read")
            .is_some()
    );
    sea_orm::TransactionSession::rollback(txn)
        .await
        .expect("rollback");
    assert!(
        db.primary()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT 1 FROM profiles WHERE id = {tid}")
            ))
            .await
            .expect("q")
            .is_none(),
        "rolled back"
    );
    c.reset();
}

#[tokio::test]
async fn insert_returning_lands_on_the_primary() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("returning").await;
    let db = Db::connect(t.config().build()).await.expect("db");
    let now = chrono::Utc::now();
    let m = Profile::insert(profile::ActiveModel {
        username: Set("ret".into()),
        display_name: Set("R".into()),
        bio: Set(String::new()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .exec_with_returning(&db)
    .await
    .expect("INSERT .. RETURNING through Db");
    assert_eq!(m.username, "ret");
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "insert into profiles (username, display_name, bio, created_at, updated_at) values ('raw', 'R', '', now(), now()) returning id",
        ))
        .await
        .expect("raw INSERT .. RETURNING through query_all");
    assert_eq!(rows.len(), 1);
    let cte = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "WITH x AS (UPDATE profiles SET bio = 'cte' WHERE username = 'raw' RETURNING id) SELECT * FROM x",
        ))
        .await
        .expect("a data-modifying CTE goes to the primary");
    assert_eq!(cte.len(), 1);
    let locked = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT id FROM profiles FOR UPDATE",
        ))
        .await
        .expect("SELECT .. FOR UPDATE goes to the primary (a standby refuses it)");
    assert_eq!(locked.len(), 2);
    assert_eq!(
        db.routing_stats().replica_reads,
        0,
        "none of these went to a replica"
    );
}

#[tokio::test]
async fn a_scope_that_wrote_reads_the_primary() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let t = c.fresh_db("sticky").await;
    let db = Db::connect(t.config().max_replica_lag(LONG).build())
        .await
        .expect("db");
    c.run(&["lag", "1000", "1"]);
    c.run(&["lag", "1000", "2"]);
    let scope = Scope::new();
    let (id, seen) = scope
        .run(async {
            let id = insert_profile(&db, "sticky").await;
            (
                id,
                Profile::find_by_id(id)
                    .using_replica()
                    .one(&db)
                    .await
                    .expect("read"),
            )
        })
        .await;
    assert!(seen.is_some(), "the scope that wrote sees its row");
    assert_eq!(scope.state().last_route(), Some(Route::Primary));
    assert!(db.routing_stats().sticky_reads >= 1);
    let (found, route) = read_in_scope(&db, id).await;
    assert!(
        !found,
        "another scope, without a token, reads the lagging replica"
    );
    assert!(is_replica(&route), "{route:?}");
    c.reset();
}

#[tokio::test]
async fn a_token_carries_read_your_writes_to_another_scope_and_instance() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let t = c.fresh_db("token").await;
    let a = Db::connect(t.config().max_replica_lag(LONG).build())
        .await
        .expect("a");
    let b = Db::connect(t.config().max_replica_lag(LONG).build())
        .await
        .expect("b");
    c.run(&["lag", "1000", "1"]);
    c.run(&["lag", "1000", "2"]);
    let first = Scope::new();
    let id = first.run(insert_profile(&a, "tokened")).await;
    let token = a
        .token_for(first.state())
        .expect("a scope that wrote has a token");
    let with = b
        .verify_token(&token)
        .await
        .expect("B accepts A's token (instances configured alike)");
    let seen = with
        .run(async {
            Profile::find_by_id(id)
                .using_replica()
                .one(&b)
                .await
                .expect("read")
        })
        .await;
    assert!(
        seen.is_some(),
        "instance B, given the token, sees the write at once"
    );
    let (found, _) = read_in_scope(&b, id).await;
    assert!(!found, "without the token B reads the lagging replica");
    c.reset();
}

#[tokio::test]
async fn a_stopped_replica_costs_no_read_and_recovers() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let t = c.fresh_db("stopped").await;
    let db = Db::connect(t.config().build()).await.expect("db");
    let strict = Db::connect(
        Config::builder()
            .database_url(&t.primary_url)
            .replica(&t.replica_urls[0])
            .replica_fallback(false)
            .health_check_interval(Duration::from_millis(100))
            .build(),
    )
    .await
    .expect("strict");
    let id = insert_profile(db.primary(), "x").await;
    // warm the pools so the failure meets open connections
    for _ in 0..4 {
        Profile::find_by_id(id).one(&db).await.expect("read");
    }
    c.run(&["stop-replica", "1"]);
    for i in 0..40 {
        let r = Profile::find_by_id(id).one(&db).await;
        assert!(r.is_ok(), "read {i} failed: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let unhealthy = wait_for(Duration::from_secs(5), || async {
        let h = db.health().await;
        !h.replicas[0].healthy
            && h.replicas[0].consecutive_failures >= seaway::figures::UNHEALTHY_AFTER
    })
    .await;
    assert!(
        unhealthy.is_ok(),
        "marked unhealthy after three failed probes"
    );
    assert!(
        db.health().await.replicas[1].healthy,
        "the other replica stays healthy"
    );
    assert!(db.health().await.degraded());
    // With fallback disabled and no usable replica, a read fails with a clear error.
    wait_for(Duration::from_secs(5), || async {
        !strict.health().await.replicas[0].healthy
    })
    .await
    .expect("strict sees it too");
    let err = Profile::find_by_id(id)
        .one(&strict)
        .await
        .expect_err("no replica, no fallback");
    assert!(
        seaway::is_connection_error(&err) && err.to_string().contains("REPLICA_FALLBACK"),
        "{err}"
    );
    c.run(&["start-replica", "1"]);
    let back = wait_for(Duration::from_secs(10), || async {
        db.health().await.replicas[0].healthy
    })
    .await;
    assert!(back.is_ok(), "healthy again after start-replica");
    assert!(
        db.routing_stats().fallbacks >= 1,
        "the failed replica reads were retried on the primary"
    );
}

#[tokio::test]
async fn a_replica_over_the_lag_bound_is_skipped() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let t = c.fresh_db("lagbound").await;
    let db = Db::connect(
        t.config()
            .max_replica_lag(Duration::from_millis(300))
            .build(),
    )
    .await
    .expect("db");
    let id = insert_profile(db.primary(), "lagging").await;
    c.run(&["lag", "1000", "1"]);
    c.run(&["lag", "1000", "2"]);
    // keep the primary writing so the replicas fall behind
    let primary = db.primary().clone();
    let writer = tokio::spawn(async move {
        for i in 0..60 {
            insert_profile(&primary, &format!("w{i}")).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let skipped = wait_for(Duration::from_secs(5), || async {
        db.health().await.replicas.iter().all(|r| r.lag_ms > 300)
    })
    .await;
    assert!(
        skipped.is_ok(),
        "lag is measured: {:?}",
        db.health().await.replicas
    );
    let before = db.routing_stats();
    for _ in 0..5 {
        let (found, route) = read_in_scope(&db, id).await;
        assert!(found);
        assert_eq!(
            route,
            Some(Route::Primary),
            "replicas over the bound are skipped"
        );
    }
    let after = db.routing_stats();
    assert_eq!(after.replica_reads, before.replica_reads);
    assert!(after.fallbacks >= before.fallbacks + 5);
    writer.await.expect("writer");
    c.run(&["lag", "0", "1"]);
    c.run(&["lag", "0", "2"]);
    let used = wait_for(Duration::from_secs(10), || async {
        is_replica(&read_in_scope(&db, id).await.1)
    })
    .await;
    assert!(used.is_ok(), "replicas are used again once caught up");
}

#[tokio::test]
async fn round_robin_alternates_and_a_scope_stays_on_one_replica() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("rr").await;
    let db = Db::connect(t.config().strategy(Strategy::RoundRobin).build())
        .await
        .expect("db");
    let mut routes = Vec::new();
    for _ in 0..4 {
        routes.push(read_in_scope(&db, 1).await.1.expect("route"));
    }
    assert!(
        routes.iter().all(|r| matches!(r, Route::Replica(_))),
        "{routes:?}"
    );
    assert_ne!(routes[0], routes[1], "{routes:?}");
    assert_eq!(routes[0], routes[2], "{routes:?}");
    assert_eq!(routes[1], routes[3], "{routes:?}");
    // monotonic reads: one scope, one replica
    let scope = Scope::new();
    let seen: Vec<Route> = scope
        .run(async {
            let mut v = Vec::new();
            for _ in 0..4 {
                Profile::find_by_id(1).one(&db).await.expect("read");
                v.push(scope.state().last_route().expect("route"));
            }
            v
        })
        .await;
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
}

#[tokio::test]
async fn least_connections_prefers_the_idle_replica() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("leastconn").await;
    let db = Db::connect(t.config().strategy(Strategy::LeastConnections).build())
        .await
        .expect("db");
    let busy = Scope::new();
    let db2 = db.clone();
    let b2 = busy.clone();
    let sleeper = tokio::spawn(async move {
        b2.run(async {
            db2.query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_sleep(1.5)",
            ))
            .await
            .expect("sleep")
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut routes = Vec::new();
    for _ in 0..6 {
        routes.push(read_in_scope(&db, 1).await.1.expect("route"));
    }
    sleeper.await.expect("join");
    let busy_route = busy.state().last_route().expect("busy route");
    assert!(matches!(busy_route, Route::Replica(_)));
    assert!(
        routes.iter().all(|r| *r != busy_route),
        "the busy replica was avoided: busy {busy_route:?}, got {routes:?}"
    );
}

/// Runs `f` in a fresh scope and says where its last read went.
async fn route_of(f: impl std::future::Future<Output = ()>) -> Route {
    let s = Scope::new();
    s.run(f).await;
    s.state().last_route().expect("route")
}

/// Follows are read where they are written.
struct FollowsOnPrimary;

impl DatabaseRouter for FollowsOnPrimary {
    fn db_for_read(&self, hints: &Hints<'_>) -> Option<&str> {
        hints.touches("follows").then_some(DEFAULT)
    }
}

#[tokio::test]
async fn a_custom_router_and_explicit_routes_are_obeyed() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("custom").await;
    let db = Db::connect_with_router(
        t.config().alias("analytics", &t.replica_urls[1]).build(),
        FollowsOnPrimary,
    )
    .await
    .expect("db");
    let r = route_of(async { Follow::find().all(&db).await.map(|_| ()).expect("q") }).await;
    assert_eq!(r, Route::Primary, "the router sends follows to the primary");
    let r = route_of(async { Story::find().all(&db).await.map(|_| ()).expect("q") }).await;
    assert!(
        matches!(r, Route::Replica(_)),
        "stories still go to a replica: {r:?}"
    );
    let r = route_of(async {
        Story::find()
            .using_primary()
            .all(&db)
            .await
            .map(|_| ())
            .expect("q")
    })
    .await;
    assert_eq!(r, Route::Primary);
    let r = route_of(async {
        Story::find()
            .using("analytics")
            .all(&db)
            .await
            .map(|_| ())
            .expect("q")
    })
    .await;
    assert_eq!(r, Route::Alias("analytics".into()));
    let n = Profile::find()
        .filter(profile::Column::Id.gt(0))
        .using_replica()
        .count(&db)
        .await
        .expect("count");
    assert_eq!(n, 0);
    // a read-only snapshot on a replica
    let snap = db.begin_read_only().await.expect("read-only txn");
    let err = snap
        .execute_unprepared("CREATE TABLE nope (x int)")
        .await
        .expect_err("the snapshot is read-only");
    assert!(err.to_string().contains("read-only"), "{err}");
    let _ = sea_orm::TransactionSession::rollback(snap).await;
    let saved = profile::ActiveModel {
        username: Set("u".into()),
        display_name: Set("U".into()),
        bio: Set(String::new()),
        created_at: Set(chrono::Utc::now()),
        updated_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(&db)
    .await
    .expect("insert");
    assert!(saved.id > 0);
}

#[tokio::test]
async fn related_selects_are_routed_and_cached() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("related").await;
    let db = Db::connect(t.config().build()).await.expect("db");
    let author = insert_profile(db.primary(), "writer").await;
    seaway_tests::insert_story(db.primary(), author, "one", true).await;
    seaway_tests::insert_story(db.primary(), author, "two", true).await;
    let scope = Scope::new();
    let (pairs, many) = scope
        .run(async {
            let pairs = Story::find()
                .find_also_related(Profile)
                .using_primary()
                .cached()
                .all(&db)
                .await
                .expect("find_also_related");
            let many = Profile::find()
                .find_with_related(Story)
                .using_primary()
                .all(&db)
                .await
                .expect("find_with_related");
            (pairs, many)
        })
        .await;
    assert_eq!(pairs.len(), 2);
    assert!(
        pairs
            .iter()
            .all(|(_, p)| p.as_ref().map(|p| p.id) == Some(author))
    );
    assert_eq!(many.len(), 1);
    assert_eq!(many[0].1.len(), 2);
    assert_eq!(scope.state().last_route(), Some(Route::Primary));
    let again = Scope::new();
    let cached = again
        .run(
            Story::find()
                .find_also_related(Profile)
                .using_primary()
                .cached()
                .all(&db),
        )
        .await
        .expect("cached");
    assert_eq!(cached, pairs);
    assert_eq!(
        again.state().last_cache(),
        Some(seaway::CacheOutcome::HitL1)
    );
    let one = Story::find()
        .find_also_related(Profile)
        .using_primary()
        .one(&db)
        .await
        .expect("one");
    assert!(one.is_some());
}

/// On SQLite a transaction that reads and then writes begins as a writer
/// (`BEGIN IMMEDIATE`): a second one waits for the first instead of failing
/// with "database is locked" at its first write. The order is forced: the
/// first reads, the second starts while it is open, the first writes after
/// a pause long enough for the second to have finished were it not waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_transaction_that_writes_waits_for_another_writer() {
    use sea_orm::TransactionTrait;
    let dir = std::env::temp_dir().join(format!("seaway-txn-{:x}", rand::random::<u64>()));
    let db = Db::connect(
        Config::builder()
            .database_url(format!("sqlite://{}/t.db?mode=rwc", dir.display()))
            .sqlite_file_defaults(true)
            .build(),
    )
    .await
    .expect("connect");
    db.execute_unprepared("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        .await
        .expect("table");
    db.execute_unprepared("INSERT INTO counter VALUES (1, 0)")
        .await
        .expect("row");
    let bump = |db: Db, pause: Duration| async move {
        let t = db.begin().await?;
        let n: i64 = t
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Sqlite,
                "SELECT n FROM counter WHERE id = 1",
            ))
            .await?
            .expect("row")
            .try_get("", "n")?;
        tokio::time::sleep(pause).await;
        t.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Sqlite,
            "UPDATE counter SET n = ? WHERE id = 1",
            [(n + 1).into()],
        ))
        .await?;
        t.commit().await
    };
    let first = tokio::spawn(bump(db.clone(), Duration::from_millis(300)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = tokio::spawn(bump(db.clone(), Duration::ZERO));
    let (a, b) = (first.await.expect("task"), second.await.expect("task"));
    assert!(a.is_ok() && b.is_ok(), "first: {a:?}, second: {b:?}");
    let n: i64 = db
        .primary()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT n FROM counter",
        ))
        .await
        .expect("read")
        .expect("row")
        .try_get("", "n")
        .expect("n");
    assert_eq!(n, 2, "both increments, none lost");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Advisory locks through `Db`: a session-level lock outside a transaction is
/// refused (it would stay on whichever pooled connection ran it) with an
/// error that says what to do; in a transaction, lock and unlock run on one
/// connection; a transaction-level lock runs anywhere. Afterwards the primary
/// holds no advisory lock, and no replica was asked.
#[tokio::test]
async fn advisory_locks_through_db_leave_no_lock_behind() {
    use sea_orm::TransactionTrait;
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("advisory").await;
    let db = Db::connect(t.config().build()).await.expect("db");
    let key = i64::from(rand::random::<u32>());
    let locks = async || {
        db.primary()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = {key}"
                ),
            ))
            .await
            .expect("pg_locks")
            .expect("row")
            .try_get::<i64>("", "n")
            .expect("n")
    };
    let before = db.routing_stats();
    for sql in [
        format!("SELECT pg_advisory_lock({key})"),
        format!("SELECT \"pg_advisory_lock\"({key})"),
        format!("SELECT 1; SELECT pg_advisory_lock_shared({key})"),
        "SET search_path = nowhere".to_owned(),
    ] {
        let err = db
            .execute_unprepared(&sql)
            .await
            .expect_err("a session statement outside a transaction");
        assert!(err.to_string().contains("transaction"), "{sql}: {err}");
        assert_eq!(locks().await, 0, "{sql}: refused before it was sent");
    }
    let txn = db.begin().await.expect("begin");
    txn.execute_unprepared(&format!("SELECT pg_advisory_lock({key})"))
        .await
        .expect("lock in a transaction");
    assert_eq!(locks().await, 1, "held");
    txn.execute_unprepared(&format!("SELECT pg_advisory_unlock({key})"))
        .await
        .expect("unlock on the same connection");
    txn.commit().await.expect("commit");
    assert_eq!(locks().await, 0, "released");
    db.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({key})"))
        .await
        .expect("a transaction-level lock");
    assert_eq!(locks().await, 0, "released at the statement's end");
    assert_eq!(
        db.routing_stats().replica_reads,
        before.replica_reads,
        "no lock statement went to a replica"
    );
}
