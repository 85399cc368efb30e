//! Routing overhead, paired: the same primary-key select alternates between a
//! plain SeaORM pool and a routed `Db` on the same server, query by query (the
//! order flips every round), so both see the same server state and the same
//! noise from the other processes on the machine.
//!
//! Which server connection a pool happens to get matters by itself: two plain
//! pools of the same options differ by up to ±9% over thousands of rounds.
//! So every comparison is made in several trials, each with fresh pools and
//! so fresh connections, and reported as the median over trials of the
//! per-trial median ratio, with the spread. The A/A control (plain against
//! plain) gives the resolution of the method on the machine of the run.
//!
//! Run with the cluster up:
//! `eval "$(scripts/cluster.sh env)"; cargo bench -p seaway --bench paired`

#![allow(missing_docs)]

#[path = "common/mod.rs"]
mod common;

use entity::prelude::Story;
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait};
use seaway::{Config, Db};
use std::future::Future;
use std::time::Instant;

// `cargo test --all-targets` runs this unoptimized as a smoke test: keep that short.
const TRIALS: usize = if cfg!(debug_assertions) { 2 } else { 8 };
const ROUNDS: usize = if cfg!(debug_assertions) { 100 } else { 1000 };

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn time<C: ConnectionTrait>(c: &C, id: i64) -> f64 {
    let t = Instant::now();
    Story::find_by_id(id).one(c).await.expect("select");
    t.elapsed().as_secs_f64() * 1e6
}

/// One trial: (plain times, routed times, per-round ratios).
async fn trial<C: ConnectionTrait>(plain: &DatabaseConnection, routed: &C) -> [Vec<f64>; 3] {
    for i in 0..ROUNDS.min(200) as i64 {
        time(plain, 1 + i % 1000).await;
        time(routed, 1 + i % 1000).await;
    }
    let (mut a, mut b, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let id = 1 + (round as i64 * 7919) % 1000;
        let (p, r) = if round % 2 == 0 {
            let p = time(plain, id).await;
            (p, time(routed, id).await)
        } else {
            let r = time(routed, id).await;
            (time(plain, id).await, r)
        };
        a.push(p);
        b.push(r);
        ratio.push(r / p);
    }
    [a, b, ratio]
}

async fn compare<C, F, Fut>(name: &str, make: F)
where
    C: ConnectionTrait,
    F: Fn() -> Fut,
    Fut: Future<Output = (DatabaseConnection, C)>,
{
    let (mut a, mut b, mut per_trial) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..TRIALS {
        let (plain, routed) = make().await;
        let [p, r, mut ratio] = trial(&plain, &routed).await;
        per_trial.push(pct(&mut ratio, 0.5));
        a.extend(p);
        b.extend(r);
    }
    let (pm, rm) = (pct(&mut a, 0.5), pct(&mut b, 0.5));
    let mut sorted = per_trial.clone();
    sorted.sort_by(f64::total_cmp);
    // `cargo test --all-targets` runs this unoptimized: say so, so no one
    // reads a debug build's ratio as the routing overhead.
    let build = if cfg!(debug_assertions) {
        " [debug build: a smoke run, not a measurement; use cargo bench]"
    } else {
        ""
    };
    println!(
        "paired/{name}{build}: {TRIALS} trials x {ROUNDS} rounds; plain median {pm:.1} µs; other median {rm:.1} µs; \
         per-trial median ratio other/plain: median {:.3}, min {:.3}, max {:.3}",
        pct(&mut per_trial, 0.5),
        sorted[0],
        sorted[sorted.len() - 1],
    );
}

fn main() {
    let rt = common::runtime();
    let Some(env) = common::env("bench_paired", &rt) else {
        return;
    };
    let (primary, replica) = (env.primary_url.as_str(), env.replica_url.as_str());
    let routed = |replica: Option<&str>, max: u32| {
        let mut c = Config::builder().database_url(primary).pool(1, max);
        if let Some(r) = replica {
            c = c.replica(r);
        }
        async move { Db::connect(c.build()).await.expect("db") }
    };
    rt.block_on(async {
        compare("primary-control-plain-vs-plain", || async {
            (
                common::plain(primary, false).await,
                common::plain(primary, false).await,
            )
        })
        .await;
        compare("primary-routed", || async {
            (common::plain(primary, false).await, routed(None, 4).await)
        })
        .await;
        compare("replica-control-plain-vs-plain", || async {
            (
                common::plain(replica, false).await,
                common::plain(replica, false).await,
            )
        })
        .await;
        compare("replica-routed", || async {
            (
                common::plain(replica, false).await,
                routed(Some(replica), 4).await,
            )
        })
        .await;
        // one connection on both sides: sqlx hands a returned connection
        // back through a spawned task, so a pool of one is slower than a
        // pool of four for back-to-back queries, plain or routed
        compare("replica-routed-pool-max-1", || async {
            (
                common::plain_sized(replica, false, 1).await,
                routed(Some(replica), 1).await,
            )
        })
        .await;
        compare("primary-routed-pool-max-1", || async {
            (
                common::plain_sized(primary, false, 1).await,
                routed(None, 1).await,
            )
        })
        .await;
    });
    // The routed Db against its own pools, used plain (the same server
    // connections on both sides), on the two-worker runtime of the rows
    // above and on a current-thread one (no wake-ups across threads).
    let current_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    for (runtime, rt) in [("two-workers", &rt), ("current-thread", &current_thread)] {
        rt.block_on(async {
            compare(
                &format!("{runtime}/primary-routed-vs-its-own-pool"),
                || async {
                    let db = routed(None, 4).await;
                    (db.primary().clone(), db)
                },
            )
            .await;
            compare(
                &format!("{runtime}/replica-routed-vs-its-own-pool"),
                || async {
                    let db = routed(Some(replica), 4).await;
                    db.probe_now().await;
                    let pool = db.replica_pool("replica1").expect("replica1").clone();
                    (pool, db)
                },
            )
            .await;
        });
    }
}
