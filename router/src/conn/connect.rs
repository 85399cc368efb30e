//! Building a [`Db`]: pools, the database's identity (for cache keys and
//! tokens), the cache, the catalog, and the background tasks.

use super::{Db, Shared};
use crate::cache::{QueryCache, Settings};
use crate::catalog::Catalog;
use crate::config::{Config, REPLICA_CONNECT_TIMEOUT, Server};
use crate::error::{Error, redact_url, scrub};
use crate::replica::{Catchup, Replica, ReplicaSet};
use crate::router::{DatabaseRouter, ReadWriteRouter};
use crate::stats::RouteCounters;
use crate::token::{Cluster, Tokens};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;

fn options(
    url: &str,
    min: u32,
    max: u32,
    timeout: Duration,
    lazy: bool,
    statement_timeout: Duration,
) -> ConnectOptions {
    let mut o = ConnectOptions::new(url.to_owned());
    o.max_connections(max)
        .min_connections(min)
        .connect_timeout(timeout)
        .acquire_timeout(timeout)
        // A liveness ping on every checkout doubles a point query's cost
        // (BENCHMARKS.md, in its git history): ping only connections idle for a while, and let a
        // replica read that meets a dead connection retry on the primary.
        .test_before_acquire(false)
        .test_before_acquire_if_idle_for(Duration::from_secs(30))
        .connect_lazy(lazy)
        .statement_timeout(statement_timeout)
        .sqlx_logging(false);
    o
}

async fn connect(url: &str, opts: ConnectOptions) -> Result<DatabaseConnection, Error> {
    Database::connect(opts).await.map_err(|e| Error::Connect {
        url: redact_url(url),
        message: tls_hint(scrub(&e.to_string(), url)),
    })
}

/// A TLS alert from the server, said in words: rustls reports the alert's
/// name only.
fn tls_hint(message: String) -> String {
    let hint = [
        (
            "UnknownCA",
            "the server does not trust the CA of the client certificate, sslcert",
        ),
        (
            "BadCertificate",
            "the server refused the client certificate, sslcert and sslkey",
        ),
        (
            "CertificateRequired",
            "the server requires a client certificate, sslcert and sslkey",
        ),
    ]
    .into_iter()
    .find(|(alert, _)| message.contains(&format!("alert: {alert}")));
    match hint {
        Some((_, hint)) => format!("{message} ({hint})"),
        None => message,
    }
}

/// A read-only twin of an SQLite URL (`mode=ro`), or `None` for in-memory.
fn sqlite_read_only(url: &str) -> Option<String> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("mode="))
        .map(str::to_owned)
        .collect();
    params.push("mode=ro".to_owned());
    Some(format!("{base}?{}", params.join("&")))
}

fn sqlite_path(url: &str) -> Option<&str> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?
        .split('?')
        .next()
}

fn sqlite_dir(url: &str) -> Option<std::path::PathBuf> {
    let path = sqlite_path(url)?;
    let parent = std::path::Path::new(path).parent()?;
    (!parent.as_os_str().is_empty()).then(|| parent.to_path_buf())
}

/// The identity of the database a connection reaches: the cluster (for
/// tokens) and a namespace hash (cluster, database, user, search path) that
/// keeps two deployments sharing one Redis apart.
async fn identity(conn: &DatabaseConnection, url: &str) -> (Cluster, u64) {
    match conn.get_database_backend() {
        DbBackend::Postgres => {
            let q = |sql: &'static str| async move {
                conn.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
                    .await
                    .ok()
                    .flatten()
            };
            // pg_control_system() may be denied to a managed service's role:
            // then the URL's host, port and database name the cluster
            let system =
                match q("SELECT system_identifier::text AS s FROM pg_control_system()").await {
                    Some(r) => r
                        .try_get::<String>("", "s")
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok()),
                    None => None,
                }
                .unwrap_or_else(|| {
                    let u = url::Url::parse(url).ok();
                    let host = u
                        .as_ref()
                        .map(|u| {
                            format!(
                                "{}:{}",
                                u.host_str().unwrap_or(""),
                                u.port().unwrap_or(5432)
                            )
                        })
                        .unwrap_or_default();
                    xxhash_rust::xxh3::xxh3_64(host.as_bytes())
                });
            let timeline = q("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) AS t")
                .await
                .and_then(|r| r.try_get::<String>("", "t").ok())
                .and_then(|t| u32::from_str_radix(&t, 16).ok())
                .unwrap_or(0);
            let names = q(
                "SELECT current_database()::text AS d, current_user::text AS u, \
                           current_setting('search_path') AS p",
            )
            .await
            .map(|r| {
                let g = |c: &str| r.try_get::<String>("", c).unwrap_or_default();
                format!("{}\0{}\0{}", g("d"), g("u"), g("p"))
            })
            .unwrap_or_default();
            let mut buf = system.to_be_bytes().to_vec();
            buf.extend_from_slice(names.as_bytes());
            (
                Cluster { system, timeline },
                xxhash_rust::xxh3::xxh3_64(&buf),
            )
        }
        _ => {
            let path = sqlite_path(url).unwrap_or(url);
            let canonical = std::fs::canonicalize(path)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| path.to_owned());
            let system = xxhash_rust::xxh3::xxh3_64(canonical.as_bytes());
            (
                Cluster {
                    system,
                    timeline: 0,
                },
                system,
            )
        }
    }
}

/// The connections a `Db` is assembled from.
struct Parts {
    primary: DatabaseConnection,
    /// The primary's probe connection (PostgreSQL, from URLs).
    primary_probe: Option<DatabaseConnection>,
    /// (name, connection, its probe connection, shares the primary's file)
    replicas: Vec<(String, DatabaseConnection, Option<DatabaseConnection>, bool)>,
    aliases: Vec<(Arc<str>, DatabaseConnection)>,
}

/// One lazily opened connection to `url` for probes and position reads,
/// outside the query pool, shaped like the server's pool (TLS, hooks).
async fn probe_connection(
    config: &Config,
    server: Server<'_>,
    url: &str,
) -> Result<DatabaseConnection, Error> {
    let mut o = shaped(
        config,
        server,
        options(
            url,
            0,
            1,
            REPLICA_CONNECT_TIMEOUT,
            true,
            config.statement_timeout,
        ),
    );
    // after the hook: whatever it set, a probe connection is one connection
    o.max_connections(1).min_connections(0);
    connect(url, o).await
}

fn shaped(config: &Config, server: Server<'_>, mut o: ConnectOptions) -> ConnectOptions {
    if let Some(f) = &config.connect_options {
        f(server, &mut o);
    }
    o
}

impl Db {
    /// Connects the primary, the replicas (lazily: a replica that is down
    /// does not stop the service) and the aliases, with the default router.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a setting that cannot be used (see
    /// [`Config::validate`]), [`Error::Connect`] when the primary cannot be
    /// reached.
    pub async fn connect(config: Config) -> Result<Self, Error> {
        Self::connect_with_router(config, ReadWriteRouter).await
    }

    /// As [`connect`](Self::connect), with a custom router (or a
    /// [`Chain`](crate::Chain) of them).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with_router(
        config: Config,
        router: impl DatabaseRouter,
    ) -> Result<Self, Error> {
        config.validate()?;
        let url = &config.database_url;
        let st = config.statement_timeout;
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let (min, max) = if memory {
            // every connection to `sqlite::memory:` is a database of its own
            (1, 1)
        } else {
            (config.pool_min, config.pool_max)
        };
        if config.is_sqlite()
            && config.create_dirs
            && let Some(dir) = sqlite_dir(url)
        {
            std::fs::create_dir_all(&dir).map_err(|e| Error::Connect {
                url: redact_url(url),
                message: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let primary = connect(
            url,
            shaped(
                &config,
                Server::Primary,
                options(url, min, max, Duration::from_secs(5), false, st),
            ),
        )
        .await?;
        let backend = primary.get_database_backend();
        let mut replicas = Vec::new();
        if backend == DbBackend::Sqlite {
            if config.sqlite_wal {
                // WAL lets the read-only twin read while the primary writes.
                let _ = primary.execute_unprepared("PRAGMA journal_mode=WAL").await;
            }
            if config.replica_urls.is_empty()
                && let Some(ro) = sqlite_read_only(url)
            {
                let conn = connect(
                    &ro,
                    shaped(
                        &config,
                        Server::ReadOnlyTwin,
                        options(&ro, 1, config.pool_max, Duration::from_secs(5), false, st),
                    ),
                )
                .await?;
                replicas.push(("replica1".to_owned(), conn, None, true));
            }
        }
        let primary_probe = if backend == DbBackend::Postgres {
            Some(probe_connection(&config, Server::Primary, url).await?)
        } else {
            None
        };
        for (i, r) in config.replica_urls.iter().enumerate() {
            let conn = connect(
                r,
                shaped(
                    &config,
                    Server::Replica(i),
                    options(
                        r,
                        config.pool_min,
                        config.pool_max,
                        REPLICA_CONNECT_TIMEOUT,
                        true,
                        st,
                    ),
                ),
            )
            .await?;
            let probe = if backend == DbBackend::Postgres {
                Some(probe_connection(&config, Server::Replica(i), r).await?)
            } else {
                None
            };
            replicas.push((
                format!("replica{}", i + 1),
                conn,
                probe,
                backend == DbBackend::Sqlite,
            ));
        }
        let mut aliases = Vec::new();
        for (name, u) in &config.aliases {
            let conn = connect(
                u,
                shaped(
                    &config,
                    Server::Alias(name),
                    options(u, 0, config.pool_max, REPLICA_CONNECT_TIMEOUT, true, st),
                ),
            )
            .await?;
            aliases.push((Arc::<str>::from(name.as_str()), conn));
        }
        Self::assemble(
            config,
            Box::new(router),
            Parts {
                primary,
                primary_probe,
                replicas,
                aliases,
            },
        )
        .await
    }

    /// A `Db` over connections the caller made: the primary and the
    /// replicas of `read_replica` (`replica1`, ...), with `config`'s other
    /// settings (its URLs are used for identity and tokens only). Works with
    /// SeaORM's `MockDatabase` (then turn [`introspect`](crate::ConfigBuilder::introspect)
    /// off), so that code using a `Db` can be unit-tested without a server.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), but no connection is made.
    pub async fn from_connections(
        config: Config,
        router: impl DatabaseRouter,
        primary: DatabaseConnection,
        replicas: Vec<DatabaseConnection>,
    ) -> Result<Self, Error> {
        config.validate()?;
        let replicas = replicas
            .into_iter()
            .enumerate()
            .map(|(i, c)| (format!("replica{}", i + 1), c, None, false))
            .collect();
        Self::assemble(
            config,
            Box::new(router),
            Parts {
                primary,
                primary_probe: None,
                replicas,
                aliases: Vec::new(),
            },
        )
        .await
    }

    async fn assemble(
        config: Config,
        router: Box<dyn DatabaseRouter>,
        parts: Parts,
    ) -> Result<Self, Error> {
        let url = &config.database_url;
        let st = config.statement_timeout;
        let Parts {
            primary,
            primary_probe,
            replicas,
            aliases,
        } = parts;
        let backend = primary.get_database_backend();
        let replicas: Vec<Arc<Replica>> = replicas
            .into_iter()
            .map(|(n, c, probe, shares)| Arc::new(Replica::new(n, c, probe, shares)))
            .collect();
        let (cluster, ns) = if config.introspect {
            identity(&primary, url).await
        } else {
            let id = xxhash_rust::xxh3::xxh3_64(url.as_bytes());
            (
                Cluster {
                    system: id,
                    timeline: 0,
                },
                id,
            )
        };
        let primary_in_recovery = config.introspect
            && backend == DbBackend::Postgres
            && primary
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT pg_is_in_recovery() AS r",
                ))
                .await
                .ok()
                .flatten()
                .and_then(|r| r.try_get::<bool>("", "r").ok())
                .unwrap_or(false);
        let mut alias_ns = Vec::new();
        for (name, _) in &aliases {
            let mut buf = ns.to_be_bytes().to_vec();
            buf.extend_from_slice(name.as_bytes());
            alias_ns.push(xxhash_rust::xxh3::xxh3_64(&buf));
        }
        let catchup = Arc::new(Catchup::default());
        let cache = QueryCache::start(
            Settings {
                l1_max_bytes: config.l1_max_bytes,
                max_entry_bytes: config.max_entry_bytes,
                join_deadline: st + Duration::from_secs(1),
            },
            config
                .redis_url
                .as_deref()
                .or(config.redis_cluster.first().map(String::as_str))
                .map(|u| (u, &config)),
            ns,
            catchup.clone(),
        )
        .await?;
        if config.token_secret.is_none()
            && backend == DbBackend::Postgres
            && url::Url::parse(url).is_ok_and(|u| u.password().is_none())
        {
            tracing::warn!(
                "SEAWAY_TOKEN_SECRET is not set and DATABASE_URL has no password: consistency tokens are signed with a key anyone who knows the URL can derive"
            );
        }
        let tokens = Tokens::new(config.token_secret.as_deref(), url, cluster);
        let now_micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        let set = ReplicaSet::new(replicas, config.strategy.clone(), config.max_replica_lag);
        let interval = config.health_check_interval;
        let introspect = config.introspect;
        let alias_names = aliases.iter().map(|(n, _)| n.clone()).collect();
        let refused = super::migrate::refused_connections(backend).await;
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            let watcher = {
                let weak = weak.clone();
                tokio::spawn(async move {
                    loop {
                        // wait without holding the shared state, so dropping
                        // the last Db still drops it
                        catchup.wanted().await;
                        let Some(s) = weak.upgrade() else { return };
                        s.replicas.catch_up(&catchup).await;
                    }
                })
            };
            let mut tasks = vec![watcher];
            if introspect {
                let weak = weak.clone();
                tasks.push(tokio::spawn(async move {
                    // Db::connect probes once itself: the first tick is one period away.
                    let mut tick =
                        tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        let Some(s) = weak.upgrade() else { return };
                        s.replicas
                            .probe(s.probe_conn(), interval.max(Duration::from_millis(500)))
                            .await;
                    }
                }));
            }
            let migrations = super::migrate::connection(&primary, weak.clone());
            Shared {
                backend,
                primary,
                primary_probe,
                migrations,
                refused,
                primary_in_recovery,
                replicas: set,
                aliases,
                alias_names,
                router,
                cache,
                catalog: Arc::new(Catalog::default()),
                counters: RouteCounters::default(),
                replica_fallback: config.replica_fallback,
                cache_enabled: !config.cache_ttl.is_zero(),
                cache_ttl: config.cache_ttl,
                statement_timeout: st,
                pool_max: config.pool_max,
                sqlite_lsn: AtomicU64::new(now_micros),
                ns,
                alias_ns,
                tokens,
                reread: tokio::sync::Mutex::new(()),
                tasks,
            }
        });
        let db = Self {
            shared,
            read_only: false,
        };
        if introspect {
            db.shared.catalog.refresh(&db.shared.primary).await;
            // Know the replicas' state before the first read.
            db.shared
                .replicas
                .probe(db.shared.probe_conn(), Duration::from_secs(1))
                .await;
        }
        Ok(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_read_only_twin() {
        assert_eq!(
            sqlite_read_only("sqlite://./data/x.db?mode=rwc").as_deref(),
            Some("sqlite://./data/x.db?mode=ro")
        );
        assert_eq!(
            sqlite_read_only("sqlite://x.db").as_deref(),
            Some("sqlite://x.db?mode=ro")
        );
        assert_eq!(sqlite_read_only("sqlite::memory:"), None);
    }
}
