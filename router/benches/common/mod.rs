//! Shared set-up of the benchmarks: a database on the cluster's primary with
//! one author and 1000 stories, visible on the replicas.

use entity::{profile, story};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ActiveModelTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait, Set};
use std::time::Duration;

/// Where the benchmark's database lives.
pub(crate) struct Env {
    /// Its URL on the primary.
    pub(crate) primary_url: String,
    /// Its URL on the first replica.
    pub(crate) replica_url: String,
    /// Redis (the cache bench only).
    #[allow(dead_code)]
    pub(crate) redis_url: String,
}

/// The runtime every benchmark uses: two workers, like the machine's cores.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt")
}

/// The cluster's URLs for database `name` (created afresh), or `None` with a
/// message when the cluster environment is absent.
pub(crate) fn env(name: &str, rt: &tokio::runtime::Runtime) -> Option<Env> {
    let (Ok(p), Ok(r), Ok(redis)) = (
        std::env::var("DATABASE_URL"),
        std::env::var("READ_REPLICA_URLS"),
        std::env::var("REDIS_URL"),
    ) else {
        eprintln!("SKIPPED: benchmarks need the cluster: eval \"$(scripts/cluster.sh env)\" first");
        return None;
    };
    if !p.starts_with("postgres") {
        eprintln!("SKIPPED: benchmarks need a PostgreSQL DATABASE_URL");
        return None;
    }
    let swap = |u: &str| format!("{}/{name}", u.rsplit_once('/').map_or(u, |x| x.0));
    let replica = r.split(',').next().unwrap_or_default().to_owned();
    rt.block_on(async {
        let admin = Database::connect(&p).await.expect("primary");
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create");
        let db = Database::connect(swap(&p)).await.expect("bench db");
        Migrator::up(&db, None).await.expect("migrate");
        seed(&db).await;
        // wait for the replica
        let rep = loop {
            if let Ok(c) = Database::connect(swap(&replica)).await
                && entity::prelude::Story::find_by_id(1000)
                    .one(&c)
                    .await
                    .ok()
                    .flatten()
                    .is_some()
            {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        drop(rep);
    });
    Some(Env {
        primary_url: swap(&p),
        replica_url: swap(&replica),
        redis_url: redis,
    })
}

async fn seed(db: &DatabaseConnection) {
    let now = chrono::Utc::now();
    let author = profile::ActiveModel {
        username: Set("bench".into()),
        display_name: Set("Bench".into()),
        bio: Set(String::new()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("author");
    let rows = (0..1000).map(|i| story::ActiveModel {
        author_id: Set(author.id),
        title: Set(format!("Story number {i} about rivers and lanterns")),
        body: Set("A body of a story, of a length like a short paragraph in a feed. ".repeat(3)),
        genre: Set(Some("fantasy".into())),
        published: Set(true),
        featured: Set(i % 50 == 0),
        view_count: Set(i),
        published_at: Set(Some(now)),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    });
    entity::prelude::Story::insert_many(rows)
        .exec_without_returning(db)
        .await
        .expect("stories");
}

/// A SeaORM pool as sqlx configures it by default (a ping on every checkout),
/// or with the ping only after 30 s idle (what Seaway uses).
#[allow(dead_code)] // used by the routing bench only
pub(crate) async fn plain(url: &str, ping_every_checkout: bool) -> DatabaseConnection {
    plain_sized(url, ping_every_checkout, 4).await
}

/// As [`plain`], with at most `max` connections.
#[allow(dead_code)] // used by the routing benches only
pub(crate) async fn plain_sized(
    url: &str,
    ping_every_checkout: bool,
    max: u32,
) -> DatabaseConnection {
    let mut o = sea_orm::ConnectOptions::new(url.to_owned());
    o.max_connections(max)
        .min_connections(1)
        .sqlx_logging(false);
    if !ping_every_checkout {
        o.test_before_acquire(false)
            .test_before_acquire_if_idle_for(Duration::from_secs(30));
    }
    Database::connect(o).await.expect("plain")
}
