//! Unit tests of the cache: L1, stamps, races, single-flight without Redis;
//! with the Redis of scripts/cluster.sh (`REDIS_URL`), the order of an
//! invalidation's reply against another instance's message.

use super::*;
use crate::tag::{Level, Moved, TagId};
use std::sync::atomic::AtomicU64;

async fn cache() -> Arc<QueryCache> {
    QueryCache::start(
        Settings {
            l1_max_bytes: 1 << 20,
            max_entry_bytes: 1 << 20,
            join_deadline: Duration::from_secs(5),
        },
        None,
        1,
        Arc::default(),
    )
    .await
    .expect("cache")
}

fn stories() -> Vec<TagId> {
    vec![TagId::table("stories"), TagId::members("stories")]
}

fn statics() -> Vec<TagId> {
    stories()
}

fn deps(_: &i64) -> Option<(Vec<TagId>, bool)> {
    Some((stories(), false))
}

fn req(key: u128, min_lsn: Lsn) -> Request<'static, i64> {
    Request {
        key,
        target: 0,
        min_lsn,
        ttl: Duration::from_secs(300),
        static_tags: &statics,
        deps: &deps,
    }
}

fn source(replay: u64, fresh: u64) -> Source {
    Source {
        replay_lsn: Lsn(replay),
        fresh_lsn: Lsn(fresh),
    }
}

async fn load_n(c: &Arc<QueryCache>, key: u128, n: i64, replay: u64) -> (i64, CacheOutcome) {
    c.get_or_load(req(key, Lsn::ZERO), || async move {
        Ok((n, source(replay, replay)))
    })
    .await
    .map(|(v, o)| (*v, o))
    .expect("load")
}

fn invalidate(c: &QueryCache, tags: &[TagId], lsn: u64) {
    let moved: Vec<Moved> = tags.iter().map(|t| Moved::new(*t, Level::Table)).collect();
    c.invalidate_local(&moved, Lsn(lsn));
}

#[tokio::test]
async fn hit_after_miss_and_miss_after_invalidation() {
    let c = cache().await;
    assert_eq!(load_n(&c, 1, 10, u64::MAX).await, (10, CacheOutcome::Miss));
    assert_eq!(load_n(&c, 1, 11, u64::MAX).await, (10, CacheOutcome::HitL1));
    invalidate(&c, &[TagId::table("profiles")], 5);
    assert_eq!(
        load_n(&c, 1, 12, u64::MAX).await,
        (10, CacheOutcome::HitL1),
        "other table"
    );
    invalidate(&c, &[TagId::members("stories")], 6);
    assert_eq!(load_n(&c, 1, 13, u64::MAX).await, (13, CacheOutcome::Miss));
    assert_eq!(c.stats().invalidations_by_level.table, 2);
}

#[tokio::test]
async fn a_fill_from_a_source_behind_the_last_invalidation_is_not_stored() {
    let c = cache().await;
    invalidate(&c, &[TagId::table("stories")], 100);
    assert_eq!(load_n(&c, 2, 1, 99).await, (1, CacheOutcome::Miss));
    assert_eq!(
        load_n(&c, 2, 2, 100).await,
        (2, CacheOutcome::Miss),
        "not stored before"
    );
    assert_eq!(load_n(&c, 2, 3, 100).await, (2, CacheOutcome::HitL1));
    assert_eq!(c.stats().refused_lag, 1);
}

#[tokio::test]
async fn a_fill_raced_by_an_invalidation_is_not_stored() {
    let c = cache().await;
    let c2 = c.clone();
    let (v, o) = c
        .get_or_load(req(3, Lsn::ZERO), || async move {
            invalidate(&c2, &[TagId::table("stories")], 7);
            Ok((1i64, source(u64::MAX, 0)))
        })
        .await
        .expect("load");
    assert_eq!((*v, o), (1, CacheOutcome::Miss));
    assert_eq!(load_n(&c, 3, 2, u64::MAX).await, (2, CacheOutcome::Miss));
    assert_eq!(c.stats().refused_race, 1);
}

#[tokio::test]
async fn entries_older_than_the_scope_are_not_used() {
    let c = cache().await;
    load_n(&c, 4, 1, 10).await;
    let (v, o) = c
        .get_or_load(req(4, Lsn(50)), || async {
            Ok((2i64, source(u64::MAX, 50)))
        })
        .await
        .expect("load");
    assert_eq!((*v, o), (2, CacheOutcome::Miss));
}

#[tokio::test]
async fn concurrent_misses_load_once() {
    let c = cache().await;
    let loads = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let c = c.clone();
            let loads = loads.clone();
            tokio::spawn(async move {
                c.get_or_load(req(9, Lsn::ZERO), || async move {
                    loads.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok((7i64, source(u64::MAX, 0)))
                })
                .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(*t.await.expect("join").expect("load").0, 7);
    }
    assert_eq!(loads.load(Relaxed), 1);
    assert_eq!(c.in_flight(), 0);
}

/// A waiter that needs more freshness than a load was proved to have loads
/// itself: the flight's result is stamped with what its source proved.
#[tokio::test]
async fn a_waiter_never_takes_a_load_fresher_than_its_source_proved() {
    let c = cache().await;
    invalidate(&c, &[TagId::table("stories")], 100);
    let gate = Arc::new(tokio::sync::Notify::new());
    let lead = {
        let (c, gate) = (c.clone(), gate.clone());
        tokio::spawn(async move {
            // a tokenless read of a replica at 90, behind the write at 100
            c.get_or_load(req(5, Lsn::ZERO), || async move {
                gate.notified().await;
                Ok((1i64, source(90, 90)))
            })
            .await
        })
    };
    tokio::task::yield_now().await;
    while c.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    // needs 100: must not join a load for less
    let mine = c.get_or_load(req(5, Lsn(100)), || async {
        Ok((2i64, source(u64::MAX, 100)))
    });
    let (v, _) = mine.await.expect("load");
    assert_eq!(*v, 2);
    gate.notify_one();
    let (v, o) = lead.await.expect("join").expect("load");
    assert_eq!((*v, o), (1, CacheOutcome::Miss));
    // and the refused fill was not stored with any freshness it lacks
    let (v, o) = c
        .get_or_load(req(5, Lsn(100)), || async {
            Ok((3i64, source(u64::MAX, 100)))
        })
        .await
        .expect("load");
    assert_eq!((*v, o), (2, CacheOutcome::HitL1));
}

#[tokio::test]
async fn a_failed_load_fails_its_waiters_at_once() {
    let c = cache().await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                c.get_or_load(req(6, Lsn::ZERO), || async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err::<(i64, Source), _>(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal(
                        "down".into(),
                    )))
                })
                .await
            })
        })
        .collect();
    let start = std::time::Instant::now();
    for t in tasks {
        let e = t.await.expect("join").expect_err("fails");
        assert!(crate::conn::is_connection_error(&e));
    }
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "one load's time, not ten"
    );
    assert_eq!(c.stats().loads, 1);
}

#[tokio::test]
async fn empty_results_live_shorter_and_no_ttl_is_longer_than_the_maximum() {
    let c = cache().await;
    assert_eq!(c.ttl_for(Duration::from_secs(300), true), NEGATIVE_TTL);
    assert_eq!(
        c.ttl_for(Duration::from_secs(300), false),
        Duration::from_secs(300)
    );
    assert_eq!(c.ttl_for(Duration::from_secs(u64::MAX / 2), false), MAX_TTL);
}

/// The Redis of scripts/cluster.sh, or `None` without it.
#[cfg(feature = "redis")]
fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("SEAWAY_REQUIRE_CLUSTER").is_err(),
                "Redis is required: eval \"$(scripts/cluster.sh env)\""
            );
            println!("SKIPPED: needs REDIS_URL");
            None
        }
    }
}

/// This instance (A) writes row 42 at LSN 100; before its invalidation
/// reaches Redis, another instance's write of the same row, later in the WAL
/// (110), takes a version there. A's invalidation then takes the next
/// version, and its reply is heard before the other's message (here: never,
/// the message goes to another channel). A listing that returned row 42
/// (its row tag is not among the tags an L2 read fetches first) is loaded
/// from a replica at 105, which has A's write and not the other: it must
/// not be stored. The reply carries the tag's LSN in Redis (110), and the
/// fill is refused; applied with A's own LSN only, it is stored and served.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_write_whose_version_comes_first_but_lsn_later_refuses_a_replica_behind_it() {
    let Some(url) = redis_url() else { return };
    let config = crate::Config::builder()
        .key_prefix(format!("seaway-unit-{:x}", rand::random::<u64>()))
        .build();
    let settings = Settings {
        l1_max_bytes: 1 << 20,
        max_entry_bytes: 1 << 20,
        join_deadline: Duration::from_secs(5),
    };
    let a = QueryCache::start(settings, Some((&url, &config)), 1, Arc::default())
        .await
        .expect("A");
    assert!(a.bus_up.load(Relaxed), "A's bus up");
    let epoch = a.epoch().expect("an epoch").text;
    let mut other = L2::new(&url, &config, 1).expect("the other instance");
    other.keys.channel = format!("{}-elsewhere", other.keys.channel);
    let row = TagId::row("stories", &["42".to_owned()]);
    let moved = [Moved::new(row, Level::Row)];
    let g = a.invalidate_local(&moved, Lsn(100));
    let first = other
        .invalidate(&epoch, &[(row, true)], Lsn(110))
        .await
        .map_err(|_| "refused")
        .expect("the other write");
    a.announce(&moved, Lsn(100), g).await;
    assert!(
        a.versions.recorded(&[row])[0] > first.version,
        "A's invalidation came second"
    );
    fn listing(_: &i64) -> Option<(Vec<TagId>, bool)> {
        let mut tags = stories();
        tags.push(TagId::row("stories", &["42".to_owned()]));
        Some((tags, false))
    }
    let load = |n: i64, replay: u64| {
        let a = a.clone();
        async move {
            let req = Request {
                deps: &listing,
                ..req(1, Lsn::ZERO)
            };
            a.get_or_load(req, || async move { Ok((n, source(replay, replay))) })
                .await
                .map(|(v, o)| (*v, o))
                .expect("load")
        }
    };
    assert_eq!(load(7, 105).await, (7, CacheOutcome::Miss));
    assert_eq!(
        load(8, 120).await,
        (8, CacheOutcome::Miss),
        "what a replica behind the other write loaded was stored"
    );
    assert_eq!(a.stats().refused_lag, 1);
}

/// A load whose source is behind the last invalidation is asked once more
/// for the invalidation's LSN; that answer is returned and stored.
#[tokio::test]
async fn a_load_behind_an_invalidation_is_read_again_and_that_answer_stored() {
    let c = cache().await;
    invalidate(&c, &[TagId::table("stories")], 100);
    let asked = std::sync::Mutex::new(Vec::new());
    let (v, o) = c
        .get_or_refresh(req(20, Lsn::ZERO), |again: Option<Lsn>| {
            asked.lock().expect("lock").push(again);
            async move {
                Ok(Some(match again {
                    None => (1i64, source(90, 90)),
                    Some(_) => (2i64, source(u64::MAX, 100)),
                }))
            }
        })
        .await
        .expect("load");
    assert_eq!((*v, o), (2, CacheOutcome::Miss), "the fresh answer");
    assert_eq!(*asked.lock().expect("lock"), vec![None, Some(Lsn(100))]);
    assert_eq!(load_n(&c, 20, 3, u64::MAX).await, (2, CacheOutcome::HitL1));
    let s = c.stats();
    assert_eq!((s.refreshed, s.refused_lag, s.loads), (1, 1, 2));
}

/// The first answer stands when the read for the invalidation's LSN fails
/// or is declined, and is not stored; a second answer still behind is not
/// asked for again.
#[tokio::test]
async fn the_first_answer_stands_when_reading_again_fails() {
    let c = cache().await;
    invalidate(&c, &[TagId::table("stories")], 100);
    let (v, _) = c
        .get_or_refresh(req(21, Lsn::ZERO), |again: Option<Lsn>| async move {
            match again {
                None => Ok(Some((1i64, source(90, 90)))),
                Some(_) => Err(sea_orm::DbErr::Custom("primary down".into())),
            }
        })
        .await
        .expect("the first answer, not the error");
    assert_eq!(*v, 1);
    let (v, _) = c
        .get_or_refresh(req(21, Lsn::ZERO), |again: Option<Lsn>| async move {
            Ok(again.is_none().then_some((4i64, source(90, 90))))
        })
        .await
        .expect("declined");
    assert_eq!(*v, 4, "declined: the first answer, not stored before");
    let calls = AtomicU64::new(0);
    let (v, _) = c
        .get_or_refresh(req(21, Lsn::ZERO), |_| {
            let n = calls.fetch_add(1, Relaxed) as i64;
            async move { Ok(Some((10 + n, source(95, 95)))) }
        })
        .await
        .expect("both behind");
    assert_eq!((*v, calls.load(Relaxed)), (11, 2), "asked twice at most");
    assert_eq!(
        load_n(&c, 21, 5, u64::MAX).await,
        (5, CacheOutcome::Miss),
        "nothing behind was stored"
    );
}
