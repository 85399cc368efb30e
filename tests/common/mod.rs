//! Helpers for the integration tests: the local cluster (primary, two
//! streaming replicas, Redis) started by `scripts/test.sh`, one fresh database
//! per test, fault injection through `scripts/cluster.sh`, and a lock so that
//! tests which stop servers or inject lag never overlap with the others.
//!
//! Without the cluster's environment (`DATABASE_URL` etc. from
//! `scripts/cluster.sh env`), a cluster test prints why it is skipped and
//! returns, unless `SEAWAY_REQUIRE_CLUSTER=1` (set by `scripts/test.sh`),
//! where it fails.

pub mod bookkeeping;
pub mod story;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use std::process::Command;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// Serializes fault injection against everything else in one test binary.
static CLUSTER_LOCK: LazyLock<tokio::sync::RwLock<()>> =
    LazyLock::new(|| tokio::sync::RwLock::new(()));

/// The cluster's addresses.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The primary's admin URL (database `postgres`).
    pub primary: String,
    /// Each replica's admin URL.
    pub replicas: Vec<String>,
    /// Redis.
    pub redis: String,
    /// The CA of Redis's certificate (over TLS).
    pub redis_ca: Option<String>,
    /// The Redis Cluster's nodes, when the suite runs on it instead of one
    /// Redis (`SEAWAY_TEST_REDIS_CLUSTER=1`).
    pub redis_cluster: Vec<String>,
    /// `scripts/cluster.sh`.
    pub script: String,
    /// A second, independent primary (another database cluster).
    pub other_primary: Option<String>,
}

/// A fresh database on the cluster, migrated, visible on every replica.
#[derive(Debug, Clone)]
pub struct TestDb {
    /// The database's name.
    pub name: String,
    /// Its URL on the primary.
    pub primary_url: String,
    /// Its URL on each replica.
    pub replica_urls: Vec<String>,
    /// Redis, and a key prefix of this test's own.
    pub redis_url: String,
    /// The key prefix for this test.
    pub prefix: String,
    /// The CA of Redis's certificate (over TLS).
    pub redis_ca: Option<String>,
    /// The Redis Cluster's nodes, in place of `redis_url` when not empty.
    pub redis_cluster: Vec<String>,
}

/// A guard: shared for ordinary tests, exclusive for fault injection.
pub enum Guard {
    /// Ordinary test.
    Shared(#[allow(dead_code)] tokio::sync::RwLockReadGuard<'static, ()>),
    /// Fault injection: restores the cluster when dropped... explicitly via [`Cluster::reset`].
    Exclusive(#[allow(dead_code)] tokio::sync::RwLockWriteGuard<'static, ()>),
}

/// The cluster, or `None` (with a printed reason) when it is not configured
/// and not required.
///
/// With `SEAWAY_TEST_TLS=1` every server is reached over TLS instead (the
/// cluster's `SEAWAY_TLS_*` URLs: `verify-full` against its CA, a password,
/// `rediss://`), so that a suite runs once more over TLS. With
/// `SEAWAY_TEST_REDIS_CLUSTER=1` L2, versions and the bus are on the Redis
/// Cluster instead (`SEAWAY_REDIS_CLUSTER_URLS`), and the Redis faults of
/// [`Cluster::run`] hit every node of it.
pub fn cluster() -> Option<Cluster> {
    let tls = std::env::var("SEAWAY_TEST_TLS").is_ok_and(|v| v == "1");
    let redis_cluster: Vec<String> =
        if std::env::var("SEAWAY_TEST_REDIS_CLUSTER").is_ok_and(|v| v == "1") {
            std::env::var("SEAWAY_REDIS_CLUSTER_URLS")
                .expect("SEAWAY_TEST_REDIS_CLUSTER=1 needs SEAWAY_REDIS_CLUSTER_URLS")
                .split(',')
                .map(str::to_owned)
                .collect()
        } else {
            Vec::new()
        };
    let var = |plain: &str| {
        let name = if tls {
            format!("SEAWAY_TLS_{plain}")
        } else {
            plain.to_owned()
        };
        std::env::var(name).ok()
    };
    let primary = var("DATABASE_URL").filter(|u| u.starts_with("postgres"));
    let replicas = var("READ_REPLICA_URLS");
    let redis = var("REDIS_URL");
    let script = std::env::var("SEAWAY_CLUSTER").ok();
    match (primary, replicas, redis, script) {
        (Some(primary), Some(replicas), Some(redis), Some(script)) => Some(Cluster {
            primary,
            replicas: replicas.split(',').map(str::to_owned).collect(),
            redis,
            redis_ca: if tls {
                std::env::var("SEAWAY_TLS_CA").ok()
            } else {
                None
            },
            redis_cluster,
            script,
            other_primary: std::env::var("SEAWAY_OTHER_PRIMARY_URL").ok(),
        }),
        _ => {
            if std::env::var("SEAWAY_REQUIRE_CLUSTER").is_ok_and(|v| v == "1") {
                panic!(
                    "the test cluster is required (SEAWAY_REQUIRE_CLUSTER=1) but its environment is missing: run scripts/test.sh"
                );
            }
            // Written to the stderr handle itself: the test harness captures
            // eprintln!, and a skip must be visible in plain `cargo test`.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: needs the PostgreSQL primary + replicas + Redis cluster; run scripts/test.sh (plain `cargo test` skips these)"
            );
            None
        }
    }
}

/// `url` on database `db` (its query string, e.g. `sslrootcert=/a/b`, kept).
fn with_db(url: &str, db: &str) -> String {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    let path = match path.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => path.to_owned(),
    };
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

impl Cluster {
    /// A shared guard: runs alongside other ordinary tests.
    pub async fn shared(&self) -> Guard {
        Guard::Shared(CLUSTER_LOCK.read().await)
    }

    /// An exclusive guard, after restoring the cluster to its normal state.
    pub async fn exclusive(&self) -> Guard {
        let g = CLUSTER_LOCK.write().await;
        self.reset();
        Guard::Exclusive(g)
    }

    /// Whether the suite talks to one Redis (not the Redis Cluster): a test
    /// that reads or writes Redis keys itself needs it, and otherwise prints
    /// that it is skipped.
    pub fn single_redis(&self) -> bool {
        if !self.redis_cluster.is_empty() {
            println!("SKIPPED on the Redis Cluster: this test reads Redis keys of one server");
        }
        self.redis_cluster.is_empty()
    }

    /// `scripts/cluster.sh` arguments as this suite means them: on the Redis
    /// Cluster, Redis faults hit all of its nodes.
    fn command<'a>(&self, args: &[&'a str]) -> Vec<&'a str> {
        let mut args = args.to_vec();
        if !self.redis_cluster.is_empty()
            && let Some(cmd) = args.first_mut()
        {
            *cmd = match *cmd {
                "stop-redis" => "stop-redis-cluster",
                "start-redis" => "redis-cluster-start",
                "pause-redis" => "pause-redis-cluster",
                "resume-redis" => "resume-redis-cluster",
                other => other,
            };
        }
        args
    }

    /// Runs `scripts/cluster.sh ARGS`, panicking on failure.
    pub fn run(&self, args: &[&str]) {
        let args = self.command(args);
        let out = Command::new("bash")
            .arg(&self.script)
            .args(&args)
            .output()
            .expect("run cluster.sh");
        assert!(
            out.status.success(),
            "cluster.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `scripts/cluster.sh ARGS`, whatever it answers.
    pub fn try_run(&self, args: &[&str]) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .args(self.command(args))
            .output();
    }

    /// Every server up and running (none paused), no lag.
    pub fn reset(&self) {
        self.try_run(&["resume-replica", "1"]);
        self.try_run(&["resume-replica", "2"]);
        self.try_run(&["resume-redis"]);
        self.run(&["start-primary"]);
        self.run(&["start-replica", "1"]);
        self.run(&["start-replica", "2"]);
        self.run(&["start-redis"]);
        self.try_run(&["resume-redis-cluster"]);
        self.try_run(&["redis-cluster-start"]);
        self.run(&["lag", "0", "1"]);
        self.run(&["lag", "0", "2"]);
    }

    /// Creates a database for `test`, migrates it on the primary, and waits
    /// until every replica has it.
    pub async fn fresh_db(&self, test: &str) -> TestDb {
        let name = format!("t_{}_{:08x}", test, rand::random::<u32>());
        let admin = Database::connect(&self.primary)
            .await
            .expect("connect primary");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let primary_url = with_db(&self.primary, &name);
        let db = Database::connect(&primary_url)
            .await
            .expect("connect test db");
        Migrator::up(&db, None).await.expect("migrate");
        let replica_urls: Vec<String> = self.replicas.iter().map(|r| with_db(r, &name)).collect();
        for r in &replica_urls {
            wait_for(Duration::from_secs(30), || async {
                match Database::connect(r).await {
                    Ok(c) => table_exists(&c, "follows").await,
                    Err(_) => false,
                }
            })
            .await
            .unwrap_or_else(|_| panic!("replica never showed database {name}"));
        }
        TestDb {
            prefix: format!("seaway-test:{name}"),
            name,
            primary_url,
            replica_urls,
            redis_url: self.redis.clone(),
            redis_ca: self.redis_ca.clone(),
            redis_cluster: self.redis_cluster.clone(),
        }
    }
}

impl TestDb {
    /// A library configuration for this database: both replicas, Redis under
    /// this test's prefix, a fast probe.
    pub fn config(&self) -> seaway::ConfigBuilder {
        let mut b = seaway::Config::builder()
            .database_url(&self.primary_url)
            .key_prefix(&self.prefix)
            .health_check_interval(Duration::from_millis(100))
            .pool(1, 8);
        b = if self.redis_cluster.is_empty() {
            b.redis_url(&self.redis_url)
        } else {
            b.redis_cluster(self.redis_cluster.clone())
        };
        if let Some(ca) = &self.redis_ca {
            b = b.redis_ca_file(ca);
        }
        for r in &self.replica_urls {
            b = b.replica(r);
        }
        b
    }

    /// A Redis client for this test's Redis (with its CA over TLS).
    pub fn redis_client(&self) -> redis::Client {
        match &self.redis_ca {
            Some(ca) => redis::Client::build_with_tls(
                self.redis_url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(ca).expect("the CA file")),
                },
            )
            .expect("redis over TLS"),
            None => redis::Client::open(self.redis_url.as_str()).expect("redis"),
        }
    }

    /// A plain connection to the primary.
    pub async fn primary(&self) -> DatabaseConnection {
        Database::connect(&self.primary_url).await.expect("primary")
    }

    /// A plain connection to replica `i` (0-based).
    pub async fn replica(&self, i: usize) -> DatabaseConnection {
        Database::connect(&self.replica_urls[i])
            .await
            .expect("replica")
    }
}

async fn table_exists(c: &DatabaseConnection, table: &str) -> bool {
    c.query_one_raw(Statement::from_string(
        DbBackend::Postgres,
        format!("SELECT to_regclass('public.{table}') IS NOT NULL AS ok"),
    ))
    .await
    .ok()
    .flatten()
    .and_then(|r| r.try_get::<bool>("", "ok").ok())
    .unwrap_or(false)
}

/// Polls `f` every 20 ms until it is true or `limit` passes.
///
/// # Errors
///
/// The time waited, when `f` never became true.
pub async fn wait_for<F, Fut>(limit: Duration, mut f: F) -> Result<Duration, Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Inserts a profile with `username` through `c`, returning its id.
pub async fn insert_profile<C: ConnectionTrait>(c: &C, username: &str) -> i64 {
    use sea_orm::{ActiveModelTrait, Set};
    let now = chrono::Utc::now();
    entity::profile::ActiveModel {
        username: Set(username.to_owned()),
        display_name: Set(username.to_owned()),
        bio: Set(String::new()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(c)
    .await
    .expect("insert profile")
    .id
}

/// Inserts a story by `author` through `c`, returning its id.
pub async fn insert_story<C: ConnectionTrait>(
    c: &C,
    author: i64,
    title: &str,
    published: bool,
) -> i64 {
    use sea_orm::{ActiveModelTrait, Set};
    let now = chrono::Utc::now();
    entity::story::ActiveModel {
        author_id: Set(author),
        title: Set(title.to_owned()),
        body: Set("body".to_owned()),
        genre: Set(None),
        published: Set(published),
        featured: Set(false),
        view_count: Set(0),
        published_at: Set(published.then_some(now)),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(c)
    .await
    .expect("insert story")
    .id
}
