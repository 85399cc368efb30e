//! Routing overhead, paired: the same primary-key select alternates between a
//! plain SeaORM pool and a routed `Db` on the same server, query by query (the
//! order flips every round), so both see the same server state and the same
//! noise from the other processes on the machine. Reports each path's median
//! and p90 and the median of the per-round ratio.
//!
//! Run with the cluster up:
//! `eval "$(scripts/cluster.sh env)"; cargo bench -p seaway --bench paired`

#![allow(missing_docs)]

#[path = "common/mod.rs"]
mod common;

use entity::prelude::Story;
use sea_orm::{DatabaseConnection, EntityTrait};
use seaway::{Config, Db};
use std::time::{Duration, Instant};

const ROUNDS: usize = 4000;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn time_plain(c: &DatabaseConnection, id: i64) -> Duration {
    let t = Instant::now();
    Story::find_by_id(id).one(c).await.expect("plain");
    t.elapsed()
}

async fn time_routed(db: &Db, id: i64) -> Duration {
    let t = Instant::now();
    Story::find_by_id(id).one(db).await.expect("routed");
    t.elapsed()
}

async fn pair(name: &str, plain: &DatabaseConnection, routed: &Db) {
    for i in 0..500 {
        time_plain(plain, 1 + i % 1000).await;
        time_routed(routed, 1 + i % 1000).await;
    }
    let (mut a, mut b, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let id = 1 + (round as i64 * 7919) % 1000;
        let (p, r) = if round % 2 == 0 {
            let p = time_plain(plain, id).await;
            (p, time_routed(routed, id).await)
        } else {
            let r = time_routed(routed, id).await;
            (time_plain(plain, id).await, r)
        };
        let (p, r) = (p.as_secs_f64() * 1e6, r.as_secs_f64() * 1e6);
        a.push(p);
        b.push(r);
        ratio.push(r / p);
    }
    let (pm, rm) = (pct(&mut a, 0.5), pct(&mut b, 0.5));
    // `cargo test --all-targets` runs this unoptimized: say so, so no one
    // reads a debug build's ratio as the routing overhead.
    let build = if cfg!(debug_assertions) {
        " [debug build: a smoke run, not a measurement; use cargo bench]"
    } else {
        ""
    };
    println!(
        "paired/{name}{build}: {ROUNDS} rounds; plain median {pm:.1} µs p90 {:.1} µs; routed median {rm:.1} µs p90 {:.1} µs; \
         median of per-round routed/plain {:.3}; ratio of medians {:.3}",
        pct(&mut a, 0.9),
        pct(&mut b, 0.9),
        pct(&mut ratio, 0.5),
        rm / pm
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let Some(env) = common::env("bench_paired", &rt) else {
        return;
    };
    rt.block_on(async {
        let plain_primary = common::plain(&env.primary_url, false).await;
        let routed_primary = Db::connect(
            Config::builder()
                .database_url(&env.primary_url)
                .pool(1, 4)
                .build(),
        )
        .await
        .expect("db");
        pair("primary", &plain_primary, &routed_primary).await;
        let plain_replica = common::plain(&env.replica_url, false).await;
        let routed_replica = Db::connect(
            Config::builder()
                .database_url(&env.primary_url)
                .replica(&env.replica_url)
                .pool(1, 4)
                .build(),
        )
        .await
        .expect("db");
        pair("replica", &plain_replica, &routed_replica).await;
    });
}
