#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Cache paths against their raw baselines in the same run: an L1 hit against
//! a plain moka get of the same `Arc`, an L2 hit against a plain Redis GET of
//! the same bytes plus decoding, a cached read against the uncached query, the
//! cost of an invalidation, and postcard against JSON for 20 stories.
//!
//! Run with the cluster up: `eval "$(scripts/cluster.sh env)"; cargo bench -p seaway --bench cache`

#[path = "common/mod.rs"]
mod common;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use entity::prelude::Story;
use entity::story;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait};
use seaway::prelude::*;
use seaway::{Config, Db};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn listing() -> sea_orm::Select<Story> {
    Story::find()
        .filter(story::Column::Published.eq(true))
        .order_by_desc(story::Column::PublishedAt)
        .order_by_desc(story::Column::Id)
        .limit(20)
}

/// `UPDATE stories SET title = .. WHERE id = 500`: a write of one row by key.
fn title_of_500() -> sea_orm::UpdateMany<Story> {
    Story::update_many()
        .col_expr(
            story::Column::Title,
            sea_orm::sea_query::Expr::value("bench"),
        )
        .filter(story::Column::Id.eq(500))
}

fn cache(c: &mut Criterion) {
    let rt = common::runtime();
    let Some(env) = common::env("bench_cache", &rt) else {
        return;
    };
    let cfg = |prefix: &str, l1: u64| {
        Config::builder()
            .database_url(&env.primary_url)
            .replica(&env.replica_url)
            .redis_url(&env.redis_url)
            .key_prefix(format!("bench-{prefix}-{}", rand::random::<u32>()))
            .l1_max_bytes(l1)
            .pool(1, 4)
            .build()
    };
    let (db, l2_only, rows, one) = rt.block_on(async {
        let db = Db::connect(cfg("l1", 64 << 20)).await.expect("db");
        let l2_only = Db::connect(cfg("l2", 0)).await.expect("db");
        let rows = listing()
            .using_replica()
            .cached()
            .all(&db)
            .await
            .expect("fill");
        let one = Story::find_by_id(500)
            .using_replica()
            .cached()
            .one(&db)
            .await
            .expect("fill");
        listing()
            .using_replica()
            .cached()
            .all(&l2_only)
            .await
            .expect("fill");
        (db, l2_only, rows, one)
    });
    assert_eq!(rows.len(), 20);
    let moka_rows: moka::future::Cache<u128, Arc<Vec<story::Model>>> =
        moka::future::Cache::new(1000);
    let moka_one: moka::future::Cache<u128, Arc<Option<story::Model>>> =
        moka::future::Cache::new(1000);
    rt.block_on(async {
        moka_rows.insert(7, Arc::new(rows.clone())).await;
        moka_one.insert(7, Arc::new(one.clone())).await;
    });

    let mut g = c.benchmark_group("l1_hit");
    g.sample_size(100)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("find_by_id/raw_moka_get_arc", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(moka_one.get(&7).await) })
    });
    g.bench_function("find_by_id/seaway_cached_one", |b| {
        b.to_async(&rt).iter(|| async {
            Story::find_by_id(500)
                .using_replica()
                .cached()
                .one(&db)
                .await
                .expect("hit")
        })
    });
    g.bench_function("find_by_id/seaway_cached_one_shared", |b| {
        b.to_async(&rt).iter(|| async {
            Story::find_by_id(500)
                .using_replica()
                .cached()
                .one_shared(&db)
                .await
                .expect("hit")
        })
    });
    // The cache's own part of a hit: the query is built (SeaORM's work,
    // timed in l1_hit_parts) in criterion's untimed set-up.
    g.bench_function("find_by_id/seaway_hit_path_query_prebuilt", |b| {
        b.to_async(&rt).iter_batched(
            || Story::find_by_id(500).using_replica().cached(),
            |q| async { q.one(&db).await.expect("hit") },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("listing20/raw_moka_get_arc", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(moka_rows.get(&7).await) })
    });
    g.bench_function("listing20/raw_moka_get_and_clone_vec", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(moka_rows.get(&7).await.map(|a| (*a).clone())) })
    });
    g.bench_function("listing20/seaway_cached_all", |b| {
        b.to_async(&rt).iter(|| async {
            listing()
                .using_replica()
                .cached()
                .all(&db)
                .await
                .expect("hit")
        })
    });
    g.bench_function("listing20/seaway_cached_all_shared", |b| {
        b.to_async(&rt).iter(|| async {
            listing()
                .using_replica()
                .cached()
                .all_shared(&db)
                .await
                .expect("hit")
        })
    });
    g.bench_function("listing20/seaway_hit_path_query_prebuilt_shared", |b| {
        b.to_async(&rt).iter_batched(
            || listing().using_replica().cached(),
            |q| async { q.all_shared(&db).await.expect("hit") },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // Where an L1 hit's time goes: building the SeaORM query, and (what the
    // key no longer does) rendering it to an SQL string and values.
    let mut g = c.benchmark_group("l1_hit_parts");
    g.sample_size(100)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("find_by_id/build_query", |b| {
        b.iter(|| black_box(Story::find_by_id(500).limit(1)))
    });
    g.bench_function("find_by_id/render_sql_string", |b| {
        let q = Story::find_by_id(500).limit(1);
        b.iter(|| black_box(q.build(sea_orm::DbBackend::Postgres)))
    });
    g.bench_function("listing20/build_query", |b| b.iter(|| black_box(listing())));
    g.bench_function("listing20/render_sql_string", |b| {
        let q = listing();
        b.iter(|| black_box(q.build(sea_orm::DbBackend::Postgres)))
    });
    g.finish();

    // L2: the same bytes through a plain connection, then decoded.
    let (mut redis_conn, key) = rt.block_on(async {
        let client = redis::Client::open(env.redis_url.as_str()).expect("redis");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("bench-l2-*:q:*")
            .query_async(&mut conn)
            .await
            .expect("keys");
        (conn, keys.into_iter().next().expect("an L2 entry"))
    });
    let mut g = c.benchmark_group("l2_hit");
    g.sample_size(60)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("listing20/raw_redis_get_plus_decode", |b| {
        b.to_async(&rt).iter(|| {
            let mut conn = redis_conn.clone();
            let key = key.clone();
            async move {
                let bytes: Vec<u8> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .expect("get");
                #[derive(serde::Deserialize)]
                struct Envelope<'a> {
                    _epoch: u64,
                    _fresh: u64,
                    _tags: Vec<u64>,
                    _versions: Vec<u64>,
                    #[serde(borrow)]
                    payload: &'a [u8],
                }
                let env: Envelope = postcard::from_bytes(&bytes).expect("envelope");
                black_box(postcard::from_bytes::<Vec<story::Model>>(env.payload).expect("decode"))
            }
        })
    });
    g.bench_function("listing20/seaway_l2_hit", |b| {
        b.to_async(&rt).iter(|| async {
            listing()
                .using_replica()
                .cached()
                .all(&l2_only)
                .await
                .expect("hit")
        })
    });
    g.finish();
    let _: Option<()> =
        rt.block_on(async { redis::cmd("PING").query_async(&mut redis_conn).await.ok() });

    let mut g = c.benchmark_group("cached_vs_uncached");
    g.sample_size(60)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("listing20/uncached_primary", |b| {
        b.to_async(&rt)
            .iter(|| async { listing().using_primary().all(&db).await.expect("q") })
    });
    g.bench_function("listing20/cached_l1_hit", |b| {
        b.to_async(&rt).iter(|| async {
            listing()
                .using_replica()
                .cached()
                .all(&db)
                .await
                .expect("hit")
        })
    });
    g.finish();

    // writes back to back; each timed run ends when Redis has taken (and a
    // replica acknowledged, where there is one) every invalidation, so the
    // time per write covers the LSN read, the local bump, the script and its
    // PUBLISH, whichever task ran them
    let until_taken = |db: Db, write: fn(Db) -> futures::future::BoxFuture<'static, ()>| {
        move |iters: u64| {
            let db = db.clone();
            async move {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    write(db.clone()).await;
                }
                while db.cache_stats().await.pending > 0 {
                    tokio::time::sleep(Duration::from_micros(100)).await;
                }
                start.elapsed()
            }
        }
    };
    let mut g = c.benchmark_group("invalidation");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let raw = db.clone();
    g.bench_function("row_write/raw_update_by_key", |b| {
        b.to_async(&rt)
            .iter(|| async { title_of_500().exec(raw.primary()).await.expect("update") })
    });
    g.bench_function("row_write/seaway_update_by_key_until_taken", |b| {
        b.to_async(&rt).iter_custom(until_taken(db.clone(), |db| {
            Box::pin(async move {
                title_of_500().exec(&db).await.expect("update");
            })
        }))
    });
    g.bench_function("table_write/raw_redis_publish", |b| {
        let client = redis::Client::open(env.redis_url.as_str()).expect("redis");
        let conn = rt
            .block_on(client.get_multiplexed_async_connection())
            .expect("redis");
        b.to_async(&rt).iter(|| {
            let mut conn = conn.clone();
            async move {
                let _: i64 = redis::cmd("PUBLISH")
                    .arg("bench-raw")
                    .arg("stories")
                    .query_async(&mut conn)
                    .await
                    .expect("publish");
            }
        })
    });
    g.bench_function("table_write/seaway_invalidate_until_taken", |b| {
        b.to_async(&rt).iter_custom(until_taken(db.clone(), |db| {
            Box::pin(async move { db.invalidate(&["stories"]).await })
        }))
    });
    g.finish();

    let mut g = c.benchmark_group("decode20");
    let post = postcard::to_allocvec(&rows).expect("postcard");
    let json = serde_json::to_vec(&rows).expect("json");
    println!(
        "20 stories: postcard {} bytes, json {} bytes",
        post.len(),
        json.len()
    );
    g.bench_function("postcard", |b| {
        b.iter(|| postcard::from_bytes::<Vec<story::Model>>(black_box(&post)).expect("d"))
    });
    g.bench_function("serde_json", |b| {
        b.iter(|| serde_json::from_slice::<Vec<story::Model>>(black_box(&json)).expect("d"))
    });
    g.finish();
}

criterion_group!(benches, cache);
criterion_main!(benches);
