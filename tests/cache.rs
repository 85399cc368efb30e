//! The two-tier cache against real Redis, the real primary and replicas.

use entity::prelude::*;
use entity::story;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use seaway::prelude::*;
use seaway::{CacheOutcome, Db, Scope};
use seaway_tests::story::{
    cached_title as title, cached_title_via as title_via, replicated_story, set_title,
};
use seaway_tests::{cluster, wait_for};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test]
async fn tiers_hit_miss_expire_and_namespaces_isolate() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("tiers").await;
    let a = Db::connect(t.config().build()).await.expect("a");
    let id = replicated_story(&t, &a, "first").await;
    assert_eq!(
        title(&a, id).await,
        (Some("first".into()), CacheOutcome::Miss)
    );
    assert_eq!(
        title(&a, id).await,
        (Some("first".into()), CacheOutcome::HitL1)
    );
    // An L1 hit through the shared API hands out the cached value itself.
    let shared = || async {
        Story::find_by_id(id)
            .using_replica()
            .cached()
            .one_shared(&a)
            .await
            .expect("read")
    };
    let (x, y) = (shared().await, shared().await);
    assert!(Arc::ptr_eq(&x, &y), "two L1 hits, one allocation");
    assert_eq!(x.as_ref().as_ref().map(|m| m.title.as_str()), Some("first"));
    let b = Db::connect(t.config().build()).await.expect("b");
    assert_eq!(
        title(&b, id).await,
        (Some("first".into()), CacheOutcome::HitL2),
        "B's L1 is empty: L2"
    );
    assert_eq!(
        title(&b, id).await.1,
        CacheOutcome::HitL1,
        "and now B's L1 has it"
    );
    let other = Db::connect(t.config().key_prefix(format!("{}-other", t.prefix)).build())
        .await
        .expect("other");
    assert_eq!(
        title(&other, id).await.1,
        CacheOutcome::Miss,
        "another namespace shares nothing"
    );
    let stats = a.cache_stats().await;
    assert_eq!((stats.l1_hits, stats.l1_misses), (3, 1));
    assert!(stats.l2_enabled && stats.l2_healthy);

    let short = Db::connect(
        t.config()
            .key_prefix(format!("{}-ttl", t.prefix))
            .cache_ttl(Duration::from_millis(300))
            .build(),
    )
    .await
    .expect("short");
    assert_eq!(title(&short, id).await.1, CacheOutcome::Miss);
    assert_eq!(title(&short, id).await.1, CacheOutcome::HitL1);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        title(&short, id).await.1,
        CacheOutcome::Miss,
        "expired in L1 and L2"
    );
}

#[tokio::test]
async fn a_write_on_one_instance_is_seen_on_another_within_100ms() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("crossinst").await;
    let a = Db::connect(t.config().build()).await.expect("a");
    let b = Db::connect(t.config().build()).await.expect("b");
    let id = replicated_story(&t, &a, "v0").await;
    // B reads the primary through its cache: a stale answer could only come
    // from the cache (replica lag is another matter, tested elsewhere).
    let mut worst = Duration::ZERO;
    for round in 1..=5 {
        wait_for(Duration::from_secs(1), || async {
            title_via(&b, id, seaway::DEFAULT).await.1 == CacheOutcome::HitL1
        })
        .await
        .expect("B has it cached");
        let want = format!("v{round}");
        set_title(&a, id, &want).await;
        // When the read that saw the new value was issued, after A's write returned.
        let written = Instant::now();
        let took = loop {
            let issued = written.elapsed();
            if title_via(&b, id, seaway::DEFAULT).await.0.as_deref() == Some(want.as_str()) {
                break issued;
            }
            assert!(
                written.elapsed() < Duration::from_millis(100),
                "round {round}: B still stale after 100 ms"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        assert!(
            took < Duration::from_millis(100),
            "round {round}: fresh only from {took:?}"
        );
        worst = worst.max(took);
    }
    println!(
        "cross-instance invalidation: worst of 5 rounds, fresh read issued {worst:?} after the write returned"
    );
}

#[tokio::test]
async fn transactions_invalidate_at_commit_not_at_rollback() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("txn").await;
    let db = Db::connect(t.config().build()).await.expect("db");
    let id = replicated_story(&t, &db, "before").await;
    title(&db, id).await;
    let txn = db.begin().await.expect("begin");
    Story::update_many()
        .col_expr(story::Column::Title, Expr::value("rolled back"))
        .filter(story::Column::Id.eq(id))
        .exec(&txn)
        .await
        .expect("update");
    assert_eq!(
        title(&db, id).await,
        (Some("before".into()), CacheOutcome::HitL1),
        "not before commit"
    );
    txn.rollback().await.expect("rollback");
    assert_eq!(
        title(&db, id).await,
        (Some("before".into()), CacheOutcome::HitL1),
        "nothing on rollback"
    );

    let txn = db.begin().await.expect("begin");
    Story::update_many()
        .col_expr(story::Column::Title, Expr::value("committed"))
        .filter(story::Column::Id.eq(id))
        .exec(&txn)
        .await
        .expect("update");
    txn.commit().await.expect("commit");
    let (v, outcome) = title(&db, id).await;
    assert_eq!(outcome, CacheOutcome::Miss, "invalidated at commit");
    // the replica may be a moment behind; the value converges and is then cached
    if v.as_deref() != Some("committed") {
        wait_for(Duration::from_secs(2), || async {
            title(&db, id).await.0.as_deref() == Some("committed")
        })
        .await
        .expect("converges");
    }
}

#[tokio::test]
async fn a_hundred_concurrent_misses_make_one_query() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("stampede").await;
    let db = Db::connect(t.config().pool(1, 20).build())
        .await
        .expect("db");
    let id = replicated_story(&t, &db, "herd").await;
    let before = (db.cache_stats().await.loads, db.routing_stats());
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let db = db.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                Story::find()
                    .filter(story::Column::Id.eq(id))
                    .using_replica()
                    .cached()
                    .all(&db)
                    .await
                    .expect("read")
                    .len()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("join"), 1);
    }
    let after = (db.cache_stats().await.loads, db.routing_stats());
    assert_eq!(after.0 - before.0, 1, "one load for 100 concurrent misses");
    let queries = (after.1.replica_reads + after.1.primary_reads)
        - (before.1.replica_reads + before.1.primary_reads);
    assert_eq!(queries, 1, "one database query");
}

/// A story cached as "old", both replicas 1 s behind, then its title set
/// to "new" through the returned `Db` (which skips no replica for lag).
async fn cached_then_written_under_lag(c: &seaway_tests::Cluster, name: &str) -> (Db, i64) {
    let t = c.fresh_db(name).await;
    let db = Db::connect(t.config().max_replica_lag(Duration::from_secs(60)).build())
        .await
        .expect("db");
    let id = replicated_story(&t, &db, "old").await;
    assert_eq!(title(&db, id).await.0.as_deref(), Some("old"));
    c.run(&["lag", "1000", "1"]);
    c.run(&["lag", "1000", "2"]);
    set_title(&db, id, "new").await;
    (db, id)
}

#[tokio::test]
async fn a_lagging_replica_never_puts_stale_rows_in_the_cache() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let (db, id) = cached_then_written_under_lag(&c, "lagfill").await;
    let start = Instant::now();
    let mut first_new = None;
    let (mut reads, mut stale_after_new) = (0, 0);
    while start.elapsed() < Duration::from_secs(3) {
        let v = title(&db, id).await.0;
        reads += 1;
        match (v.as_deref(), first_new) {
            (Some("new"), None) => first_new = Some(start.elapsed()),
            (Some("old"), Some(_)) => stale_after_new += 1,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let stats = db.cache_stats().await;
    println!(
        "lag 1000: {reads} reads, new value first seen after {first_new:?}, {stale_after_new} stale reads after it, {} fills refused for lag",
        stats.refused_lag
    );
    assert!(first_new.is_some(), "the new value arrives");
    assert_eq!(
        stale_after_new, 0,
        "no read returns the old value once the new one was seen"
    );
    assert!(
        stats.refused_lag >= 1,
        "stale replica answers were refused, not stored"
    );
    c.reset();
}

/// The replica's title of story `id`, uncached: what the lag leaves there.
async fn replica_title(db: &Db, id: i64) -> Option<String> {
    Story::find_by_id(id)
        .using_replica()
        .one(db)
        .await
        .expect("replica read")
        .map(|m| m.title)
}

/// After an instance applied an invalidation (its own write, or another
/// instance's message), a cached read of those rows never answers with what
/// a replica that has not replayed the write still holds: the replica's
/// answer is refused and read again on the primary (or a replica that has
/// the write), and that answer is stored.
#[tokio::test]
async fn a_cached_read_never_answers_older_than_an_invalidation_its_instance_applied() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let t = c.fresh_db("refresh").await;
    let config = || t.config().max_replica_lag(Duration::from_secs(60)).build();
    let a = Db::connect(config()).await.expect("a");
    let b = Db::connect(config()).await.expect("b");
    // one story for each instance to read first after the write (the first
    // fresh answer goes to L2, and the other instance would hit it there)
    let mine = replicated_story(&t, &a, "old").await;
    let told = replicated_story(&t, &a, "old").await;
    for id in [mine, told] {
        for db in [&a, &b] {
            assert_eq!(title(db, id).await.0.as_deref(), Some("old"));
        }
    }
    c.run(&["lag", "1000", "1"]);
    c.run(&["lag", "1000", "2"]);
    set_title(&a, mine, "new").await;
    set_title(&a, told, "new").await;
    // B has applied A's invalidations
    wait_for(Duration::from_secs(5), || async {
        let (sa, sb) = (a.cache_stats().await, b.cache_stats().await);
        sa.pending == 0 && sb.version >= sa.version
    })
    .await
    .expect("B applied the invalidations");
    let refreshed = |db: &Db| {
        let db = db.clone();
        async move { db.cache_stats().await.refreshed }
    };
    let (ra, rb) = (refreshed(&a).await, refreshed(&b).await);
    for (name, db, id) in [
        ("A (the writer)", &a, mine),
        ("B (told by Redis)", &b, told),
    ] {
        assert_eq!(
            replica_title(db, id).await.as_deref(),
            Some("old"),
            "the replicas have not replayed the write yet"
        );
        assert_eq!(
            title(db, id).await,
            (Some("new".into()), CacheOutcome::Miss),
            "{name}: a cached read after the invalidation"
        );
        assert_eq!(
            title(db, id).await,
            (Some("new".into()), CacheOutcome::HitL1),
            "{name}: the fresh answer was stored"
        );
    }
    assert_eq!(refreshed(&a).await - ra, 1, "A read it again once");
    assert_eq!(refreshed(&b).await - rb, 1, "B read it again once");
    // the other instance: from L2 (A's fresh fill) or read again itself
    assert_eq!(title(&b, mine).await.0.as_deref(), Some("new"));
    assert_eq!(title(&a, told).await.0.as_deref(), Some("new"));
    c.reset();
}

/// A scope that was answered from the primary because its replica was
/// behind an invalidation does not read back past that answer afterwards,
/// cached or not (monotonic reads per scope).
#[tokio::test]
async fn a_scope_never_reads_back_past_a_refreshed_answer() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let (db, id) = cached_then_written_under_lag(&c, "refresh_scope").await;
    let (cached, uncached) = Scope::new()
        .run(async {
            let cached = Story::find_by_id(id)
                .using_replica()
                .cached()
                .one(&db)
                .await
                .expect("cached read")
                .map(|m| m.title);
            // plain routing: a replica, unless the scope must see more
            let uncached = Story::find_by_id(id)
                .one(&db)
                .await
                .expect("read")
                .map(|m| m.title);
            (cached, uncached)
        })
        .await;
    assert_eq!(
        cached.as_deref(),
        Some("new"),
        "the cached read was refreshed"
    );
    assert_eq!(
        uncached.as_deref(),
        Some("new"),
        "the scope's next read did not go back to the replica's old row"
    );
    assert_eq!(
        replica_title(&db, id).await.as_deref(),
        Some("old"),
        "still lagging"
    );
    c.reset();
}

#[tokio::test]
async fn redis_down_costs_nothing_and_l2_comes_back() {
    let Some(c) = cluster() else { return };
    let _g = c.exclusive().await;
    let t = c.fresh_db("redisdown").await;
    let db = Db::connect(
        t.config()
            .redis_timeouts(Duration::from_millis(100), Duration::from_millis(500))
            .build(),
    )
    .await
    .expect("db");
    let id = replicated_story(&t, &db, "r0").await;
    title(&db, id).await;
    c.run(&["stop-redis"]);
    let start = Instant::now();
    for i in 0..20 {
        set_title(&db, id, &format!("r{i}")).await;
        let seen = wait_for(Duration::from_secs(2), || async {
            title(&db, id).await.0 == Some(format!("r{i}"))
        })
        .await;
        assert!(seen.is_ok(), "write {i} is read back while Redis is down");
    }
    println!(
        "20 writes and reads with Redis down took {:?}",
        start.elapsed()
    );
    let s = db.cache_stats().await;
    assert!(s.l2_errors > 0, "errors are counted");
    assert!(!s.l2_healthy, "L2 reported unhealthy");
    assert!(db.health().await.degraded());
    c.run(&["start-redis"]);
    wait_for(Duration::from_secs(5), || async {
        db.cache_stats().await.l2_healthy
    })
    .await
    .expect("L2 healthy again within the back-off");
    // L2 used again: a fill on this instance is a hit on a new one
    let fresh = replicated_story(&t, &db, "after").await;
    wait_for(Duration::from_secs(3), || async {
        title(&db, fresh).await;
        let other = Db::connect(t.config().build()).await.expect("other");
        title(&other, fresh).await.1 == CacheOutcome::HitL2
    })
    .await
    .expect("L2 serves again");
    let other = Db::connect(t.config().build()).await.expect("other");
    assert_eq!(
        title(&other, id).await.0.as_deref(),
        Some("r19"),
        "no stale value after recovery"
    );
}

#[tokio::test]
async fn an_undecodable_l2_value_is_a_miss() {
    let Some(c) = cluster() else { return };
    if !c.single_redis() {
        return;
    }
    let _g = c.shared().await;
    let t = c.fresh_db("garbage").await;
    let a = Db::connect(t.config().build()).await.expect("a");
    let id = replicated_story(&t, &a, "good").await;
    title(&a, id).await;
    let client = t.redis_client();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let keys: Vec<String> = wait_for_keys(&mut conn, &format!("{}:*:q:*", t.prefix)).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let _: () = redis::cmd("SET")
        .arg(&keys[0])
        .arg(b"\xff\x00garbage".as_slice())
        .query_async(&mut conn)
        .await
        .expect("set");
    let b = Db::connect(t.config().build()).await.expect("b");
    assert_eq!(
        title(&b, id).await,
        (Some("good".into()), CacheOutcome::Miss),
        "garbage is a miss, not an error"
    );
}

async fn wait_for_keys(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    for _ in 0..50 {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(conn)
            .await
            .expect("keys");
        if !keys.is_empty() {
            return keys;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Vec::new()
}

#[tokio::test]
async fn db_invalidate_and_raw_writes_invalidate_by_table() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("rawinv").await;
    let db = Db::connect(t.config().build()).await.expect("db");
    let id = replicated_story(&t, &db, "raw0").await;
    title(&db, id).await;
    assert_eq!(title(&db, id).await.1, CacheOutcome::HitL1);
    db.invalidate(&["stories"]).await;
    assert_eq!(
        title(&db, id).await.1,
        CacheOutcome::Miss,
        "db.invalidate empties the table's entries"
    );
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        &format!("UPDATE stories SET title = 'raw1' WHERE id = {id}"),
    )
    .await
    .expect("raw update");
    wait_for(Duration::from_secs(2), || async {
        title(&db, id).await.0.as_deref() == Some("raw1")
    })
    .await
    .expect("a raw write invalidates the tables it names");
}

#[tokio::test]
async fn a_foreign_key_cascade_invalidates_the_tables_it_changes() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("cascade").await;
    let db = Db::connect(t.config().build()).await.expect("db");
    let id = replicated_story(&t, &db, "orphan").await;
    let author = Story::find_by_id(id)
        .one(db.primary())
        .await
        .expect("read")
        .expect("story")
        .author_id;
    // Read from the primary, so that a stale answer can come only from the cache.
    assert_eq!(
        title_via(&db, id, seaway::DEFAULT).await.0.as_deref(),
        Some("orphan")
    );
    assert_eq!(
        title_via(&db, id, seaway::DEFAULT).await.1,
        CacheOutcome::HitL1
    );
    // Deleting the author deletes the story (ON DELETE CASCADE): the write
    // names `profiles` only.
    Profile::delete_by_id(author)
        .exec(&db)
        .await
        .expect("delete profile");
    let (title, outcome) = title_via(&db, id, seaway::DEFAULT).await;
    println!("after the cascade: {title:?}, {outcome:?}");
    assert_eq!(title, None, "the cascade's deletion is seen at once");
    assert_eq!(outcome, CacheOutcome::Miss);

    // A foreign key created through the Db is followed from the next write on.
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        "CREATE TABLE shelf (id bigint PRIMARY KEY); \
         CREATE TABLE shelf_item (id bigint PRIMARY KEY, \
           shelf_id bigint REFERENCES shelf (id) ON DELETE CASCADE)",
    )
    .await
    .expect("create tables");
    let before = db.cache_stats().await.invalidations;
    sea_orm::ConnectionTrait::execute_unprepared(&db, "DELETE FROM shelf")
        .await
        .expect("delete");
    let moved = db.cache_stats().await.invalidations - before;
    println!("tags invalidated by DELETE FROM shelf: {moved}");
    assert_eq!(moved, 2, "shelf and, by its cascade, shelf_item");
}

#[tokio::test]
async fn a_cached_answer_is_not_counted_as_a_primary_read() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("countread").await;
    let db = Db::connect(t.config().build()).await.expect("db");
    let id = replicated_story(&t, &db, "counted").await;
    let scope = Scope::new();
    let read = || async {
        Story::find_by_id(id)
            .using_replica()
            .cached()
            .one(&db)
            .await
            .expect("read")
            .expect("story")
    };
    let (first, second) = scope
        .run(async {
            set_title(&db, id, "sticky").await;
            // once Redis has taken the write: its reply, which moves the
            // versions here, would otherwise refuse a fill made meanwhile
            wait_for(Duration::from_secs(3), || async {
                db.cache_stats().await.pending == 0
            })
            .await
            .expect("the write taken");
            let before = db.routing_stats();
            read().await;
            let first = (db.routing_stats(), scope.state().last_cache());
            let hits = db.cache_stats().await.l1_hits;
            read().await;
            // the scope's outcome stays the miss (a hit does not hide it)
            let second = (db.routing_stats(), db.cache_stats().await.l1_hits - hits);
            assert_eq!(first.0.sticky_reads, before.sticky_reads + 1);
            (first, second)
        })
        .await;
    println!(
        "sticky reads: {} then {}; outcomes {:?} then {:?}",
        first.0.sticky_reads, second.0.sticky_reads, first.1, second.1
    );
    assert_eq!(
        first.1,
        Some(CacheOutcome::Miss),
        "the scope's write emptied the entry"
    );
    assert_eq!(second.1, 1, "the second read an L1 hit");
    assert_eq!(
        second.0.sticky_reads, first.0.sticky_reads,
        "an L1 hit reads nothing from the primary"
    );
    assert_eq!(second.0.primary_reads, first.0.primary_reads);
}
