//! L2, tag versions and the invalidation bus on a Redis Cluster (three
//! masters, three replicas, from scripts/cluster.sh): entries shared across
//! instances, invalidations delivered, and every master handing over to its
//! replica under load with no failed request and no stale read after.

use entity::prelude::*;
use sea_orm::EntityTrait;
use seaway::prelude::*;
use seaway::{CacheOutcome, Db};
use seaway_tests::bookkeeping::{bookkeeping, set_back};
use seaway_tests::story::{cached_title, replicated_title, try_set_title};
use seaway_tests::{Cluster, Guard, TestDb, cluster, insert_profile, insert_story, wait_for};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The cluster's nodes, or `None` without the cluster.
fn nodes() -> Option<Vec<String>> {
    cluster()?;
    match std::env::var("SEAWAY_REDIS_CLUSTER_URLS") {
        Ok(v) if !v.is_empty() => Some(v.split(',').map(str::to_owned).collect()),
        _ => {
            assert!(
                std::env::var("SEAWAY_REQUIRE_CLUSTER").is_err(),
                "the Redis Cluster is required: eval \"$(scripts/cluster.sh env)\""
            );
            println!("SKIPPED: needs the Redis Cluster of scripts/cluster.sh");
            None
        }
    }
}

/// Waits until `db` has no invalidation pending (Redis took each one and a
/// replica acknowledged it); panics with `what` after `limit`.
async fn acknowledged(db: &Db, limit: Duration, what: &str) {
    wait_for(limit, || async { db.cache_stats().await.pending == 0 })
        .await
        .unwrap_or_else(|_| panic!("not acknowledged: {what}"));
}

/// A test's start: the nodes, the cluster (held alone: these tests stop
/// and pause nodes), and a database of its own; `None` without the cluster.
async fn start(name: &str) -> Option<(Vec<String>, Cluster, Guard, TestDb)> {
    let nodes = nodes()?;
    let c = cluster().expect("cluster");
    let g = c.exclusive().await;
    let t = c.fresh_db(name).await;
    Some((nodes, c, g, t))
}

/// Two instances on `t` with L2 on the Redis Cluster (B without an L1).
async fn instances(t: &TestDb, nodes: &[String]) -> (Db, Db) {
    instances_with(t, nodes, seaway::settings::DEFAULT_REDIS_TIMEOUT).await
}

/// [`instances`] with a Redis timeout of `timeout` (its `WAIT` is half).
async fn instances_with(t: &TestDb, nodes: &[String], timeout: Duration) -> (Db, Db) {
    let make = |l1: u64| {
        let mut c = t
            .config()
            .l1_max_bytes(l1)
            .redis_timeouts(timeout, seaway::settings::DEFAULT_REDIS_BACKOFF)
            .build();
        c.redis_url = None;
        c.redis_cluster = nodes.to_vec();
        c
    };
    let a = Db::connect(make(64 << 20)).await.expect("A");
    let b = Db::connect(make(0)).await.expect("B");
    for db in [&a, &b] {
        wait_for(Duration::from_secs(10), || async {
            let h = db.health().await;
            h.cache.l2_healthy && h.cache.bus_healthy
        })
        .await
        .expect("L2 and the bus up on the Redis Cluster");
    }
    (a, b)
}

/// An entry stored by A is an L2 hit on B, and A's write reaches B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_and_invalidations_cross_instances_on_a_redis_cluster() {
    let Some((nodes, _c, _g, t)) = start("rcluster").await else {
        return;
    };
    let (a, b) = instances(&t, &nodes).await;
    let author = insert_profile(a.primary(), "rc").await;
    let id = insert_story(a.primary(), author, "v0", true).await;
    replicated_title(&t, id, "v0").await;
    assert_eq!(cached_title(&a, id).await.0.as_deref(), Some("v0"));
    // B (no L1) finds A's entry in the cluster (after a topology change the
    // first calls may time out and skip L2 for a back-off)
    wait_for(Duration::from_secs(5), || async {
        cached_title(&b, id).await == (Some("v0".into()), CacheOutcome::HitL2)
    })
    .await
    .expect("B reads A's entry from the Redis Cluster");
    try_set_title(&a, id, "v1").await.expect("write");
    replicated_title(&t, id, "v1").await;
    wait_for(Duration::from_secs(2), || async {
        cached_title(&b, id).await.0.as_deref() == Some("v1")
    })
    .await
    .expect("B sees A's write through the cluster");
    let stats = b.cache_stats().await;
    assert!(stats.l2_enabled && stats.l2_healthy, "{stats:?}");
}

/// Five replicated stories on `t`, by one author.
async fn stories(t: &TestDb, a: &Db, name: &str) -> Vec<i64> {
    let author = insert_profile(a.primary(), name).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(insert_story(a.primary(), author, &format!("s{i}-0"), true).await);
    }
    for (i, id) in ids.iter().enumerate() {
        replicated_title(t, *id, &format!("s{i}-0")).await;
    }
    ids
}

/// Reads and writes (one in five) of `ids` on A and B for 8 s, with
/// `fault` run after 2 s; prints and returns (requests, failed).
async fn under_load(a: &Db, b: &Db, ids: &[i64], what: &str, fault: impl FnOnce()) -> (u64, u64) {
    let failed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(8);
    let mut tasks = Vec::new();
    for (w, db) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        let (ids, failed, done) = (ids.to_vec(), failed.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < stop {
                let id = ids[(w + n) % ids.len()];
                let ok = if n.is_multiple_of(5) {
                    try_set_title(&db, id, &format!("w{w}-{n}")).await.is_ok()
                } else {
                    Story::find_by_id(id)
                        .using_replica()
                        .cached()
                        .one(&db)
                        .await
                        .is_ok()
                };
                if !ok {
                    failed.fetch_add(1, Relaxed);
                }
                done.fetch_add(1, Relaxed);
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    fault();
    let took = started.elapsed();
    for task in tasks {
        task.await.expect("load");
    }
    let (done, failed) = (done.load(Relaxed), failed.load(Relaxed));
    println!("{what} in {took:?} under load: {done} requests, {failed} failed");
    (done, failed)
}

/// One more write per row, then A and B read what the primary holds.
async fn converge(t: &TestDb, a: &Db, b: &Db, ids: &[i64]) {
    for (i, id) in ids.iter().enumerate() {
        try_set_title(a, *id, &format!("final-{i}"))
            .await
            .expect("write");
    }
    for (i, id) in ids.iter().enumerate() {
        let want = format!("final-{i}");
        replicated_title(t, *id, &want).await;
        for (name, db) in [("A", a), ("B", b)] {
            wait_for(Duration::from_secs(3), || async {
                cached_title(db, *id).await.0.as_deref() == Some(want.as_str())
            })
            .await
            .unwrap_or_else(|_| panic!("{name} still serves an old title of story {id}"));
        }
    }
    for db in [a, b] {
        wait_for(Duration::from_secs(5), || async {
            let h = db.health().await;
            h.cache.l2_healthy && h.cache.bus_healthy
        })
        .await
        .expect("L2 and the bus healthy again");
    }
}

/// Every master of the Redis Cluster hands over to its replica (CLUSTER
/// FAILOVER) while two instances take reads and writes: no request fails,
/// and afterwards every instance reads what the primary holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_of_every_master_under_load_fails_nothing_and_leaves_nothing_stale() {
    let Some((nodes, c, _g, t)) = start("rcfailover").await else {
        return;
    };
    let (a, b) = instances(&t, &nodes).await;
    let ids = stories(&t, &a, "rcf").await;
    let (_, failed) = under_load(&a, &b, &ids, "failover of every master", || {
        c.run(&["redis-cluster-failover"]);
    })
    .await;
    assert_eq!(failed, 0, "requests failed during the failover");
    converge(&t, &a, &b, &ids).await;
    let stats = b.cache_stats().await;
    println!(
        "B (no L1): {} L2 hits, {} L2 errors over the run",
        stats.l2_hits, stats.l2_errors
    );
    assert!(
        stats.l2_hits > 0,
        "B read entries from the cluster: {stats:?}"
    );
}

/// `CLUSTER NODES` as the first of `nodes` that answers sees it.
async fn node_table(nodes: &[String]) -> String {
    for url in nodes {
        let client = redis::Client::open(url.as_str()).expect("node");
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await
            && let Ok(table) = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async::<String>(&mut conn)
                .await
        {
            return table;
        }
    }
    panic!("no node of {nodes:?} answers");
}

/// The port of the master that holds this test's versions, epoch and
/// channel (the `{prefix:ns}` slot): the master whose keys include its
/// epoch, among the masters `CLUSTER NODES` lists now.
async fn versions_master(t: &TestDb, nodes: &[String]) -> String {
    let pattern = format!("{{{}:*}}:epoch", t.prefix);
    let table = node_table(nodes).await;
    for line in table.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || !f[2].contains("master") || f[2].contains("fail") {
            continue;
        }
        let addr = f[1].split('@').next().expect("address");
        let client = redis::Client::open(format!("redis://{addr}/")).expect("master");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("master");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut conn)
            .await
            .expect("keys");
        if !keys.is_empty() {
            return addr.rsplit(':').next().expect("port").to_owned();
        }
    }
    panic!("no master holds {pattern}");
}

/// The master that holds the versions is killed (SIGKILL: no handover, and
/// whatever it had not replicated is lost) while two instances take reads
/// and writes; its replica takes over, the node comes back as a replica.
/// No request fails, and afterwards every instance reads what the primary
/// holds (that no later write is lost with the old master's versions is
/// `a_lost_version_never_makes_a_later_write_invalidate_nothing`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_under_load_fails_nothing_and_leaves_nothing_stale() {
    let Some((nodes, c, _g, t)) = start("rckill").await else {
        return;
    };
    let (a, b) = instances(&t, &nodes).await;
    let ids = stories(&t, &a, "rck").await;
    try_set_title(&a, ids[0], "s0-0")
        .await
        .expect("a first write");
    let port = versions_master(&t, &nodes).await;
    let (_, failed) = under_load(&a, &b, &ids, "the versions' master killed", || {
        c.run(&["redis-cluster-kill", &port]);
        c.run(&["redis-cluster-start"]);
    })
    .await;
    assert_eq!(failed, 0, "requests failed while the master was down");
    converge(&t, &a, &b, &ids).await;
}

/// The ports of the cluster's nodes (as `CLUSTER NODES` lists them, failed
/// ones left out) where this test's invalidation channel has a subscriber.
async fn bus_nodes(t: &TestDb, nodes: &[String]) -> Vec<String> {
    let table = node_table(nodes).await;
    let mut found = Vec::new();
    for line in table.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || f[2].contains("fail") {
            continue;
        }
        let addr = f[1].split('@').next().expect("address");
        let Ok(client) = redis::Client::open(format!("redis://{addr}/")) else {
            continue;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            continue;
        };
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg(format!("{{{}:*}}:inv", t.prefix))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if !channels.is_empty() {
            found.push(addr.rsplit(':').next().expect("port").to_owned());
        }
    }
    found
}

/// The node the instances' invalidation bus listens on is killed: each bus
/// moves to another node of `REDIS_CLUSTER_URLS`, and a write on A again
/// reaches B's L1 through it, well within the short TTL a deaf instance
/// falls back to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_moves_to_another_node_when_its_node_dies() {
    let Some((nodes, c, _g, t)) = start("rcbus").await else {
        return;
    };
    let make = || {
        let mut cfg = t.config().build();
        cfg.redis_url = None;
        cfg.redis_cluster = nodes.clone();
        cfg
    };
    let a = Db::connect(make()).await.expect("A");
    let b = Db::connect(make()).await.expect("B");
    let up = || async {
        let (ha, hb) = (a.health().await, b.health().await);
        ha.cache.bus_healthy && hb.cache.bus_healthy
    };
    wait_for(Duration::from_secs(10), up)
        .await
        .expect("the buses up");
    let before = bus_nodes(&t, &nodes).await;
    println!("the bus listens on {before:?}");
    let dead = before.first().expect("a node with the bus").clone();
    let ids = stories(&t, &a, "rcb").await;
    c.run(&["redis-cluster-kill", &dead]);
    let back = wait_for(Duration::from_secs(10), up).await;
    let after = bus_nodes(&t, &nodes).await;
    println!("node :{dead} killed: buses back after {back:?}, now on {after:?}");
    assert!(back.is_ok(), "the buses came back on another node");
    assert!(!after.contains(&dead), "{after:?}");
    let id = ids[0];
    wait_for(Duration::from_secs(5), || async {
        cached_title(&b, id).await == (Some("s0-0".into()), CacheOutcome::HitL1)
    })
    .await
    .expect("B caches the story in L1");
    try_set_title(&a, id, "moved").await.expect("write");
    replicated_title(&t, id, "moved").await;
    let seen = wait_for(Duration::from_millis(500), || async {
        cached_title(&b, id).await.0.as_deref() == Some("moved")
    })
    .await;
    println!("B saw A's write after {seen:?}");
    assert!(
        seen.is_ok(),
        "A's write reached B's L1 through the moved bus"
    );
    c.run(&["redis-cluster-start"]);
}

/// A connection to the node on `port`.
async fn node(port: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .expect("node")
        .get_multiplexed_async_connection()
        .await
        .expect("node")
}

/// The port of the replica of the master on `port`.
async fn replica_of(nodes: &[String], port: &str) -> String {
    let table = node_table(nodes).await;
    let id = table
        .lines()
        .find(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.contains(&format!(":{port}@")))
        })
        .and_then(|l| l.split_whitespace().next())
        .expect("the master's id")
        .to_owned();
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[2].contains("slave") && f[3] == id)
        .map(|f| {
            f[1].split('@')
                .next()
                .expect("address")
                .rsplit(':')
                .next()
                .expect("port")
                .to_owned()
        })
        .expect("a replica of the master")
}

/// The versions' replica is paused (SIGSTOP) when A writes: the master
/// runs the invalidation and announces it, but no replica acknowledges it.
/// The write's versions are then set back on the master, as a takeover
/// faster than the heartbeat deadline leaves them (the replica had not
/// received them; the epoch stays). An instance that did not hear the
/// announcement (C, started after) must not find the entry A stored before
/// the write valid: A keeps the invalidation pending and sends it again
/// until a replica acknowledges it (`WAIT 1`). Without that, C serves the
/// old title from L2 until the entry's TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_no_redis_replica_acknowledged_is_sent_again() {
    let Some((nodes, c, _g, t)) = start("rcwait").await else {
        return;
    };
    let (a, b) = instances(&t, &nodes).await;
    let id = stories(&t, &a, "rcw").await[0];
    // a first write: A learns that the versions' master has a replica
    try_set_title(&a, id, "v0").await.expect("write");
    replicated_title(&t, id, "v0").await;
    acknowledged(&a, Duration::from_secs(3), "the first write acknowledged").await;
    assert_eq!(cached_title(&a, id).await.0.as_deref(), Some("v0"));
    wait_for(Duration::from_secs(5), || async {
        cached_title(&b, id).await == (Some("v0".into()), CacheOutcome::HitL2)
    })
    .await
    .expect("A's entry in L2");
    drop(b);
    let master = versions_master(&t, &nodes).await;
    let replica = replica_of(&nodes, &master).await;
    let mut on_master = node(&master).await;
    let before = bookkeeping(&mut on_master, &t.prefix).await;
    c.run(&["redis-cluster-pause", &replica]);
    try_set_title(&a, id, "v1").await.expect("write");
    wait_for(Duration::from_secs(2), || async {
        bookkeeping(&mut node(&master).await, &t.prefix).await != before
    })
    .await
    .expect("the master took the invalidation");
    // past the WAIT's timeout (half the Redis timeout): from here on no
    // replica has acknowledged the write, and none can
    tokio::time::sleep(seaway::settings::DEFAULT_REDIS_TIMEOUT * 2).await;
    let unacknowledged = a.cache_stats().await.unacknowledged;
    // the write's versions lost (the replica never had them)
    set_back(&mut on_master, &t.prefix, &before).await;
    let pending = a.cache_stats().await.pending;
    c.run(&["redis-cluster-resume", &replica]);
    let acked = wait_for(Duration::from_secs(5), || async {
        a.cache_stats().await.pending == 0
    })
    .await;
    replicated_title(&t, id, "v1").await;
    let late = {
        let mut cfg = t.config().l1_max_bytes(0).build();
        cfg.redis_url = None;
        cfg.redis_cluster = nodes.to_vec();
        Db::connect(cfg).await.expect("C")
    };
    wait_for(Duration::from_secs(10), || async {
        late.health().await.cache.l2_healthy
    })
    .await
    .expect("C's L2 up");
    let (title, outcome) = cached_title(&late, id).await;
    println!(
        "replica paused: {unacknowledged} unacknowledged, {pending} tags pending on A; \
         acknowledged after resume: {acked:?}; \
         C reads {title:?} ({outcome:?})"
    );
    assert!(
        pending > 0,
        "A counted an unacknowledged invalidation as taken"
    );
    assert_eq!(
        title.as_deref(),
        Some("v1"),
        "C found the entry from before the write valid ({outcome:?})"
    );
    acked.expect("A's invalidation acknowledged once the replica is back");
}

/// The master that holds the versions is killed while every instance's bus
/// listens on another node, so no subscription breaks: the heartbeats, which
/// go to that slot, fail, the buses drop, and on the way back each instance
/// takes the epoch the new master makes (its run id). An entry stored in
/// the old epoch is then a miss on every instance, whatever the lost
/// master had not replicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_versions_master_gives_every_instance_a_new_epoch() {
    let Some((nodes, c, _g, t)) = start("rcepoch").await else {
        return;
    };
    let (probe, _) = instances(&t, &nodes).await;
    let master = versions_master(&t, &nodes).await;
    let replica = replica_of(&nodes, &master).await;
    drop(probe);
    println!("the versions' master :{master}, its replica :{replica}");
    // the buses listen first on a node that is neither
    let mut order = nodes.to_vec();
    order.sort_by_key(|u| u.contains(&format!(":{master}")) || u.contains(&format!(":{replica}")));
    let (a, b) = instances(&t, &order).await;
    // (the probe's subscription ends at its next message)
    let off = wait_for(Duration::from_secs(3), || async {
        !bus_nodes(&t, &nodes).await.contains(&master)
    })
    .await;
    let buses = bus_nodes(&t, &nodes).await;
    assert!(
        off.is_ok(),
        "a bus listens on the versions' master: {buses:?}"
    );
    let id = stories(&t, &a, "rce").await[0];
    assert_eq!(cached_title(&a, id).await.0.as_deref(), Some("s0-0"));
    wait_for(Duration::from_secs(5), || async {
        cached_title(&b, id).await == (Some("s0-0".into()), CacheOutcome::HitL2)
    })
    .await
    .expect("A's entry in L2");
    assert_eq!(cached_title(&a, id).await.1, CacheOutcome::HitL1);
    let epoch_key = |m: &str| {
        let m = m.to_owned();
        let pattern = format!("{{{}:*}}:epoch", t.prefix);
        async move {
            let mut conn = node(&m).await;
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut conn)
                .await
                .expect("keys");
            let key = keys.first().expect("the epoch key").clone();
            let v: String = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("epoch");
            v
        }
    };
    let old = epoch_key(&master).await;
    c.run(&["redis-cluster-kill", &master]);
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut node(&replica).await)
        .await
        .expect("info");
    let run_id = info
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .expect("run id")
        .trim()
        .to_owned();
    let adopted = wait_for(Duration::from_secs(10), || async {
        let (ha, hb) = (a.health().await, b.health().await);
        ha.cache.bus_healthy
            && hb.cache.bus_healthy
            && epoch_key(&replica).await.starts_with(&format!("{run_id}:"))
    })
    .await;
    let new = epoch_key(&replica).await;
    // B first: A's read loads and stores the entry again, in the new epoch
    let on_b = cached_title(&b, id).await;
    let on_a = cached_title(&a, id).await;
    println!(
        "epoch {old} -> {new} (new master's run id {run_id}) after {adopted:?}; A {on_a:?}, B {on_b:?}"
    );
    c.run(&["redis-cluster-start"]);
    adopted.expect("the new master's epoch, with both buses back");
    assert_eq!(on_a.0.as_deref(), Some("s0-0"));
    assert!(
        on_a.1 != CacheOutcome::HitL1,
        "A kept its L1 entry of the old epoch: {on_a:?}"
    );
    assert!(
        on_b.1 != CacheOutcome::HitL2,
        "B took the old epoch's entry: {on_b:?}"
    );
}

/// The versions' replica is paused (SIGSTOP) for 3 s while two instances
/// read and write: every invalidation's `WAIT` goes unanswered, and yet no
/// request fails or waits on it (a write never waits for Redis), and once
/// the replica is back every pending invalidation is acknowledged and every
/// instance reads what the primary holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_replica_fails_nothing_and_leaves_nothing_stale() {
    let Some((nodes, c, _g, t)) = start("rcpause").await else {
        return;
    };
    let (a, b) = instances(&t, &nodes).await;
    let ids = stories(&t, &a, "rcp").await;
    try_set_title(&a, ids[0], "s0-0")
        .await
        .expect("a first write");
    let master = versions_master(&t, &nodes).await;
    let replica = replica_of(&nodes, &master).await;
    let (_, failed) = under_load(&a, &b, &ids, "the versions' replica paused for 3 s", || {
        tokio::task::block_in_place(|| {
            c.run(&["redis-cluster-pause", &replica]);
            std::thread::sleep(Duration::from_secs(3));
            c.run(&["redis-cluster-resume", &replica]);
        })
    })
    .await;
    let unacknowledged =
        a.cache_stats().await.unacknowledged + b.cache_stats().await.unacknowledged;
    println!("{unacknowledged} invalidations went unacknowledged while it was paused");
    assert_eq!(failed, 0, "requests failed while the replica was paused");
    assert!(
        unacknowledged > 0,
        "no WAIT went unanswered: was the replica paused?"
    );
    for db in [&a, &b] {
        acknowledged(
            db,
            Duration::from_secs(5),
            "every pending invalidation acknowledged after the resume",
        )
        .await;
    }
    converge(&t, &a, &b, &ids).await;
}

/// While the versions' replica is paused, the `WAIT` after an invalidation
/// blocks its connection on the server for half the Redis timeout (here
/// 500 ms). It runs on the instance's invalidation connection, so the same
/// instance's L2 reads, on the other, are not queued behind it: B, which
/// has no L1, writes one story and reads another from L2 throughout. With
/// the `WAIT` on the shared connection, the reads right after each write
/// wait the 500 ms out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_invalidation_holds_up_no_l2_read() {
    let Some((nodes, c, _g, t)) = start("rcconn").await else {
        return;
    };
    let timeout = Duration::from_secs(1);
    let (_a, b) = instances_with(&t, &nodes, timeout).await;
    let ids = stories(&t, &b, "rcc").await;
    let (written, read) = (ids[0], ids[1]);
    // a first write: B learns that the versions' master has a replica
    try_set_title(&b, written, "v0").await.expect("write");
    acknowledged(&b, Duration::from_secs(3), "the first write acknowledged").await;
    // the fill's store in Redis is sent in the background: until it is an
    // L2 hit
    wait_for(Duration::from_secs(5), || async {
        cached_title(&b, read).await.1 == CacheOutcome::HitL2
    })
    .await
    .expect("the story stored in L2");
    let master = versions_master(&t, &nodes).await;
    let replica = replica_of(&nodes, &master).await;
    c.run(&["redis-cluster-pause", &replica]);
    let (mut slowest, mut reads, mut other) = (Duration::ZERO, 0u32, Vec::new());
    for round in 0..3 {
        // past the slow-replica window: this write's invalidation WAITs
        tokio::time::sleep(Duration::from_millis(1100)).await;
        try_set_title(&b, written, &format!("v{}", round + 1))
            .await
            .expect("write");
        let until = Instant::now() + Duration::from_millis(800);
        while Instant::now() < until {
            let started = Instant::now();
            let (_, outcome) = cached_title(&b, read).await;
            slowest = slowest.max(started.elapsed());
            reads += 1;
            if outcome != CacheOutcome::HitL2 {
                other.push(outcome);
            }
        }
    }
    let unacknowledged = b.cache_stats().await.unacknowledged;
    c.run(&["redis-cluster-resume", &replica]);
    println!(
        "replica paused: {reads} L2 reads after 3 writes, the slowest {slowest:?}; \
         {unacknowledged} invalidations unacknowledged; {} not L2 hits",
        other.len()
    );
    assert!(
        unacknowledged >= 3,
        "the writes' WAITs were answered: was the replica paused?"
    );
    // not asserted: a read may find L2 skipped (an L2 call that failed
    // while the cluster client refreshed its view of the paused node opens
    // the breaker for its back-off; seen once on CI), which is a miss, not
    // a wait
    assert!(
        slowest < timeout / 4,
        "an L2 read waited {slowest:?} behind an invalidation's WAIT of {:?}",
        timeout / 2
    );
    acknowledged(
        &b,
        Duration::from_secs(5),
        "every pending invalidation acknowledged after the resume",
    )
    .await;
}

/// While the versions' replica is paused, one unanswered `WAIT` (half the
/// Redis timeout, here 500 ms) makes the next second's invalidations go
/// without one. Ten writes by B in a row then reach A's L1 about 500 ms
/// after they are made, not one `WAIT` after another (5 s): the
/// invalidation connection is held once per window, not once per write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_replica_delays_announcements_once_not_per_write() {
    let Some((nodes, c, _g, t)) = start("rcslow").await else {
        return;
    };
    let timeout = Duration::from_secs(1);
    let (a, b) = instances_with(&t, &nodes, timeout).await;
    let author = insert_profile(a.primary(), "rcs").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(insert_story(a.primary(), author, &format!("s{i}"), true).await);
    }
    try_set_title(&b, ids[0], "s0")
        .await
        .expect("a first write");
    acknowledged(&b, Duration::from_secs(3), "the first write acknowledged").await;
    for (i, id) in ids.iter().enumerate() {
        replicated_title(&t, *id, &format!("s{i}")).await;
        wait_for(Duration::from_secs(5), || async {
            cached_title(&a, *id).await.1 == CacheOutcome::HitL1
        })
        .await
        .expect("the story in A's L1");
    }
    let master = versions_master(&t, &nodes).await;
    let replica = replica_of(&nodes, &master).await;
    c.run(&["redis-cluster-pause", &replica]);
    for (i, id) in ids.iter().enumerate() {
        try_set_title(&b, *id, &format!("p{i}"))
            .await
            .expect("write");
    }
    let written = Instant::now();
    let mut left: Vec<usize> = (0..ids.len()).collect();
    while !left.is_empty() && written.elapsed() < Duration::from_secs(10) {
        let mut still = Vec::new();
        for &i in &left {
            if cached_title(&a, ids[i]).await.0 != Some(format!("p{i}")) {
                still.push(i);
            }
        }
        left = still;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = written.elapsed();
    let unacknowledged = b.cache_stats().await.unacknowledged;
    // what the resends of B's pending invalidations cost A while the
    // replica stays paused, against the same reads once they are taken
    let paused = hit_rate(&a, &ids).await;
    c.run(&["redis-cluster-resume", &replica]);
    println!(
        "replica paused: 10 writes on B reached A's L1 {took:?} after the last; \
         {unacknowledged} unacknowledged"
    );
    assert!(left.is_empty(), "writes of {left:?} never reached A");
    assert!(
        unacknowledged > 0,
        "no WAIT went unanswered: was the replica paused?"
    );
    assert!(
        took < timeout * 3,
        "10 announcements took {took:?}: the invalidation connection was held per write"
    );
    acknowledged(
        &b,
        Duration::from_secs(5),
        "every pending invalidation acknowledged after the resume",
    )
    .await;
    let resumed = hit_rate(&a, &ids).await;
    println!(
        "A's L1 hit rate on the 10 written stories over 2 s: {paused:.3} while the \
         replica stays paused (B sends its pending invalidations again), {resumed:.3} after"
    );
}

/// A's L1 hit rate reading `ids` in turn for 2 s.
async fn hit_rate(a: &Db, ids: &[i64]) -> f64 {
    let (mut hits, mut reads) = (0u32, 0u32);
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        for id in ids {
            hits += u32::from(cached_title(a, *id).await.1 == CacheOutcome::HitL1);
            reads += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f64::from(hits) / f64::from(reads.max(1))
}
