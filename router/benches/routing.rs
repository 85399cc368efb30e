#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Routing overhead: a routed primary-key select against the same query on a
//! plain SeaORM connection to the same server.
//!
//! Run with the cluster up: `eval "$(scripts/cluster.sh env)"; cargo bench -p seaway --bench routing`

#[path = "common/mod.rs"]
mod common;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use entity::prelude::Story;
use sea_orm::{ConnectionTrait, EntityTrait};
use seaway::prelude::*;
use seaway::{Config, Db};
use std::time::Duration;

fn point_query(c: &mut Criterion) {
    let rt = common::runtime();
    let Some(env) = common::env("bench_routing", &rt) else {
        return;
    };
    let (plain_primary, pinged_primary, plain_replica, routed_primary, routed_replica) = rt
        .block_on(async {
            (
                common::plain(&env.primary_url, false).await,
                common::plain(&env.primary_url, true).await,
                common::plain(&env.replica_url, false).await,
                // no replicas: every read is routed to the primary
                Db::connect(
                    Config::builder()
                        .database_url(&env.primary_url)
                        .pool(1, 4)
                        .build(),
                )
                .await
                .expect("db"),
                Db::connect(
                    Config::builder()
                        .database_url(&env.primary_url)
                        .replica(&env.replica_url)
                        .pool(1, 4)
                        .build(),
                )
                .await
                .expect("db"),
            )
        });
    let mut g = c.benchmark_group("pk_select");
    g.sample_size(60)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    pk_select(&mut g, &rt, "primary/plain_seaorm", &plain_primary);
    pk_select(
        &mut g,
        &rt,
        "primary/plain_seaorm_ping_on_checkout",
        &pinged_primary,
    );
    // The routed Db's own pool, used plain: the same server connections as
    // the routed calls, so the comparison is not blurred by which backend a
    // pool happens to get (two plain pools differ by up to ±9%: the paired bench).
    pk_select(
        &mut g,
        &rt,
        "primary/plain_same_pool",
        routed_primary.primary(),
    );
    pk_select(&mut g, &rt, "primary/routed_db", &routed_primary);
    pk_select(&mut g, &rt, "replica/plain_seaorm", &plain_replica);
    let same_pool_replica = routed_replica.replica_pool("replica1").expect("replica1");
    pk_select(&mut g, &rt, "replica/plain_same_pool", same_pool_replica);
    pk_select(&mut g, &rt, "replica/routed_db", &routed_replica);
    g.bench_function("replica/routed_explicit_using_replica", |b| {
        b.to_async(&rt).iter(|| async {
            Story::find_by_id(PK)
                .using_replica()
                .one(&routed_replica)
                .await
                .expect("q")
        })
    });
    g.finish();
}

/// The primary key every `pk_select` benchmark reads.
const PK: i64 = 500;

/// `Story::find_by_id(PK).one(conn)`, benchmarked as `name` in `g`.
fn pk_select<C: ConnectionTrait>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    conn: &C,
) {
    g.bench_function(name, |b| {
        b.to_async(rt)
            .iter(|| async { Story::find_by_id(PK).one(conn).await.expect("q") })
    });
}

criterion_group!(benches, point_query);
criterion_main!(benches);
