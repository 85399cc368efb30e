//! Instructions per call, for `valgrind --tool=callgrind`: the same
//! primary-key select on a plain SeaORM pool, on a routed `Db`, and as a
//! cached L1 hit. Instruction counts do not move with the machine's load, so
//! the routing overhead can be read to the instruction rather than through
//! the ±9% noise of wall-clock medians (BENCHMARKS.md).
//!
//! ```sh
//! eval "$(scripts/cluster.sh env)"
//! cargo build --release -p seaway --example count_instructions
//! for m in plain routed routed-replica cached; do
//!   valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured*' \
//!     --callgrind-out-file=/tmp/cg.$m target/release/examples/count_instructions $m 2000
//! done
//! ```
//!
//! Each run prints its mode and count; callgrind's total divided by the count
//! is the figure per call. `DATABASE_URL` and `READ_REPLICA_URLS` must name a
//! database holding stories 1-100: the benches' `bench_routing` or the load
//! benchmark's `loadtest` (swap the database name in the cluster's URLs).

#![allow(missing_docs)]

use entity::prelude::Story;
use sea_orm::{ConnectionTrait, Database, EntityTrait};
use seaway::prelude::*;
use seaway::{Config, Db};

#[inline(never)]
fn measured<F: std::future::Future<Output = ()>>(rt: &tokio::runtime::Runtime, f: F) {
    rt.block_on(f);
}

async fn loop_plain<C: ConnectionTrait>(c: &C, n: i64) {
    for i in 0..n {
        let row = Story::find_by_id(1 + i % 100).one(c).await.expect("select");
        std::hint::black_box(row);
    }
}

async fn loop_cached(db: &Db, n: i64) {
    for i in 0..n {
        let row = Story::find_by_id(1 + i % 100)
            .using_replica()
            .cached()
            .one_shared(db)
            .await
            .expect("select");
        std::hint::black_box(row);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "routed".into());
    let n: i64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let primary = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let replica = std::env::var("READ_REPLICA_URLS")
        .ok()
        .and_then(|r| r.split(',').next().map(str::to_owned));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let plain = |url: String| async move {
        let mut o = sea_orm::ConnectOptions::new(url);
        o.max_connections(4)
            .min_connections(1)
            .sqlx_logging(false)
            .test_before_acquire(false)
            .test_before_acquire_if_idle_for(std::time::Duration::from_secs(30));
        Database::connect(o).await.expect("plain")
    };
    let routed = |replica: Option<String>| {
        let mut c = Config::builder().database_url(&primary).pool(1, 4);
        if let Some(r) = replica {
            c = c.replica(&r);
        }
        async move { Db::connect(c.build()).await.expect("db") }
    };
    match mode.as_str() {
        "plain" => {
            let c = rt.block_on(plain(primary.clone()));
            rt.block_on(loop_plain(&c, 100));
            measured(&rt, loop_plain(&c, n));
        }
        "plain-replica" => {
            let c = rt.block_on(plain(replica.clone().expect("READ_REPLICA_URLS")));
            rt.block_on(loop_plain(&c, 100));
            measured(&rt, loop_plain(&c, n));
        }
        "routed" => {
            let db = rt.block_on(routed(None));
            rt.block_on(loop_plain(&db, 100));
            measured(&rt, loop_plain(&db, n));
        }
        "routed-replica" => {
            let db = rt.block_on(routed(replica));
            rt.block_on(async {
                db.probe_now().await;
                loop_plain(&db, 100).await;
            });
            measured(&rt, loop_plain(&db, n));
        }
        "cached" => {
            let db = rt.block_on(routed(None));
            rt.block_on(loop_cached(&db, 200));
            measured(&rt, loop_cached(&db, n));
        }
        other => {
            panic!("unknown mode {other}: plain, plain-replica, routed, routed-replica, cached")
        }
    }
    println!("{mode} {n}");
}
