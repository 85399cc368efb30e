//! Settings: the environment of `shared/API.md`, or built in code.

use crate::error::{Error, redact_url};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The library's default: an in-memory SQLite database (nothing is created
/// on disk unless a URL asks for a file).
pub const DEFAULT_DATABASE_URL: &str = "sqlite::memory:";
/// `CACHE_TTL_SECS` default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// `MAX_REPLICA_LAG_MS` default.
pub const DEFAULT_MAX_REPLICA_LAG: Duration = Duration::from_millis(1000);
/// `HEALTH_CHECK_INTERVAL_MS` default.
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(1000);
/// `DB_POOL_MIN_SIZE` default.
pub const DEFAULT_POOL_MIN: u32 = 2;
/// `DB_POOL_MAX_SIZE` default.
pub const DEFAULT_POOL_MAX: u32 = 10;
/// `SEAWAY_L1_MAX_BYTES` default: 64 MiB of cached results in process.
pub const DEFAULT_L1_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Every Redis call gives up after this long (`SEAWAY_REDIS_TIMEOUT_MS`).
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(100);
/// After Redis errors, Redis is skipped for this long (`SEAWAY_REDIS_BACKOFF_MS`).
pub const DEFAULT_REDIS_BACKOFF: Duration = Duration::from_millis(1000);
/// Key namespace in Redis (`SEAWAY_CACHE_PREFIX`).
pub const DEFAULT_KEY_PREFIX: &str = "seaway";
/// Connect and acquire timeout of replica pools: a dead replica costs little.
pub const REPLICA_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// `DB_STATEMENT_TIMEOUT_MS` default: every statement is cancelled after
/// this long (by the server, and by the client when the server does not
/// answer at all).
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// `SEAWAY_CACHE_MAX_ENTRY_BYTES` default: larger results are served and
/// kept in L1, but not sent to Redis.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// The shortest `SEAWAY_TOKEN_SECRET` accepted.
pub const MIN_TOKEN_SECRET_LEN: usize = 32;

/// How reads are spread over healthy replicas.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// Each replica in turn.
    #[default]
    RoundRobin,
    /// A uniformly random replica.
    Random,
    /// The replica with the fewest queries in flight.
    LeastConnections,
    /// A policy of the user's: it chooses among the replicas usable for the
    /// read (healthy, within the lag bound, replayed far enough).
    Custom(std::sync::Arc<dyn Balance>),
}

impl std::fmt::Debug for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::RoundRobin => "RoundRobin",
            Self::Random => "Random",
            Self::LeastConnections => "LeastConnections",
            Self::Custom(_) => "Custom",
        })
    }
}

impl PartialEq for Strategy {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Custom(a), Self::Custom(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// A replica as a [`Balance`] policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Candidate<'a> {
    /// Its index among the configured replicas.
    pub index: usize,
    /// Its name (`replica1`, ...).
    pub name: &'a str,
    /// Queries in flight on it now.
    pub in_flight: usize,
    /// How far behind the primary it was at the last probe.
    pub lag_ms: u64,
}

/// A balancing policy: picks one of the usable replicas for a read.
///
/// ```
/// use seaway::settings::{Balance, Candidate};
/// /// The least lagging replica.
/// struct Freshest;
/// impl Balance for Freshest {
///     fn pick(&self, usable: &[Candidate<'_>]) -> usize {
///         usable.iter().min_by_key(|c| c.lag_ms).map_or(0, |c| c.index)
///     }
/// }
/// let strategy = seaway::Strategy::Custom(std::sync::Arc::new(Freshest));
/// # let _ = strategy;
/// ```
pub trait Balance: Send + Sync + 'static {
    /// The `index` of the chosen candidate (`usable` is never empty); an
    /// index that is not among them picks the first.
    fn pick(&self, usable: &[Candidate<'_>]) -> usize;
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round_robin" => Ok(Self::RoundRobin),
            "random" => Ok(Self::Random),
            "least_connections" => Ok(Self::LeastConnections),
            other => Err(format!(
                "unknown strategy {other:?}: use round_robin, random or least_connections"
            )),
        }
    }
}

/// Everything [`Db::connect`](crate::Db::connect) needs.
///
/// Build it with [`Config::from_env`] or [`Config::builder`]. `Debug` never
/// shows a password.
#[derive(Clone)]
pub struct Config {
    /// The `default` alias: the primary.
    pub database_url: String,
    /// The `read_replica` alias: any number of streaming replicas.
    pub replica_urls: Vec<String>,
    /// Further named aliases (e.g. an analytics replica), each one connection pool.
    pub aliases: BTreeMap<String, String>,
    /// L2 cache and cross-instance invalidation; `None`: L1 only. A
    /// password or an ACL user goes in the URL (`redis://user:pass@host/`),
    /// TLS with `rediss://` (the `rustls` feature).
    pub redis_url: Option<String>,
    /// A Redis Cluster instead of one Redis (`REDIS_CLUSTER_URLS`, a few of
    /// its nodes; the others are found): L2, versions and the bus on it.
    pub redis_cluster: Vec<String>,
    /// A PEM file of the CA that signed Redis's certificate (`rediss://`
    /// to a private CA); `None`: the system's roots.
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// A client certificate and its key, PEM files, for a Redis that
    /// authenticates clients by certificate (mutual TLS, `rediss://`);
    /// `None`: no certificate is presented.
    pub redis_client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Time-to-live of cached query results; zero disables caching.
    pub cache_ttl: Duration,
    /// Upper bound of the L1 cache in bytes of encoded results.
    pub l1_max_bytes: u64,
    /// Namespace of Redis keys and of the invalidation channel.
    pub key_prefix: String,
    /// Replica balancing.
    pub strategy: Strategy,
    /// A replica further behind than this is skipped.
    pub max_replica_lag: Duration,
    /// Replica probe period.
    pub health_check_interval: Duration,
    /// With no usable replica: `true` reads from the primary, `false` fails.
    pub replica_fallback: bool,
    /// Connections kept open per pool.
    pub pool_min: u32,
    /// Connections at most per pool.
    pub pool_max: u32,
    /// Bound on every Redis call.
    pub redis_timeout: Duration,
    /// How long Redis is skipped after errors.
    pub redis_backoff: Duration,
    /// Every statement's time bound.
    pub statement_timeout: Duration,
    /// Results larger than this (encoded) are not stored in Redis.
    pub max_entry_bytes: usize,
    /// The key that signs consistency tokens; `None`: derived from the
    /// primary's URL (its password included) and the cluster's identity,
    /// so that instances configured alike accept each other's tokens.
    pub token_secret: Option<String>,
    /// Shapes each server's SeaORM `ConnectOptions` after Seaway's own
    /// (search path, logging, `after_connect` hooks, timeouts).
    pub connect_options: Option<ConnectOptionsHook>,
    /// Whether connecting asks the servers who they are (cluster identity,
    /// primary keys, foreign keys, replica positions). Off for handles over
    /// a `MockDatabase`, which would be asked questions it has no answer for.
    pub introspect: bool,
    /// SQLite: put the file in WAL mode (a persistent setting of the file),
    /// so the read-only twin reads while the primary writes. Off by default.
    pub sqlite_wal: bool,
    /// SQLite: create the file's directory when missing. Off by default.
    pub create_dirs: bool,
}

/// Which server a `ConnectOptions` is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Server<'a> {
    /// The primary (`default`).
    Primary,
    /// Replica `index` (0-based) of `read_replica`.
    Replica(usize),
    /// The SQLite read-only twin of the primary's file.
    ReadOnlyTwin,
    /// A named alias.
    Alias(&'a str),
}

/// A function that shapes each server's connect options.
pub type ConnectOptionsHook =
    std::sync::Arc<dyn Fn(Server<'_>, &mut sea_orm::ConnectOptions) + Send + Sync>;

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field(
                "replica_urls",
                &self
                    .replica_urls
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("aliases", &self.aliases.keys().collect::<Vec<_>>())
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field(
                "redis_cluster",
                &self
                    .redis_cluster
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("redis_ca_file", &self.redis_ca_file)
            .field("redis_client_cert", &self.redis_client_cert)
            .field("cache_ttl", &self.cache_ttl)
            .field("strategy", &self.strategy)
            .field("max_replica_lag", &self.max_replica_lag)
            .field("health_check_interval", &self.health_check_interval)
            .field("replica_fallback", &self.replica_fallback)
            .field("pool", &(self.pool_min, self.pool_max))
            .field("statement_timeout", &self.statement_timeout)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("token_secret", &self.token_secret.as_ref().map(|_| "<set>"))
            .field("introspect", &self.introspect)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            replica_urls: Vec::new(),
            aliases: BTreeMap::new(),
            redis_url: None,
            redis_cluster: Vec::new(),
            redis_ca_file: None,
            redis_client_cert: None,
            cache_ttl: DEFAULT_CACHE_TTL,
            l1_max_bytes: DEFAULT_L1_MAX_BYTES,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            strategy: Strategy::RoundRobin,
            max_replica_lag: DEFAULT_MAX_REPLICA_LAG,
            health_check_interval: DEFAULT_HEALTH_CHECK_INTERVAL,
            replica_fallback: true,
            pool_min: DEFAULT_POOL_MIN,
            pool_max: DEFAULT_POOL_MAX,
            redis_timeout: DEFAULT_REDIS_TIMEOUT,
            redis_backoff: DEFAULT_REDIS_BACKOFF,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            token_secret: None,
            connect_options: None,
            introspect: true,
            sqlite_wal: false,
            create_dirs: false,
        }
    }
}

impl Config {
    /// Starts from the defaults (an in-memory SQLite database, no replicas, no Redis).
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Self::default())
    }

    /// Reads the variables of `shared/API.md` (and `SEAWAY_*` extras); unset
    /// or empty variables take their defaults.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first variable whose value is unusable.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// As [`from_env`](Self::from_env), with every variable's name prefixed
    /// (`from_env_prefixed("MYAPP_")` reads `MYAPP_DATABASE_URL`, ...); errors
    /// name the prefixed variable.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first variable whose value is unusable.
    pub fn from_env_prefixed(prefix: &str) -> Result<Self, Error> {
        Self::read(prefix, |k| std::env::var(k).ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `get`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the variable.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        Self::read("", get)
    }

    fn read(prefix: &str, get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let n = |k: &str| format!("{prefix}{k}");
        let var = |k: &str| {
            get(&n(k))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut c = Self::default();
        if let Some(url) = var("DATABASE_URL") {
            c.database_url = check_url(
                &n("DATABASE_URL"),
                &url,
                &["postgres", "postgresql", "sqlite"],
            )?;
        }
        if let Some(urls) = var("READ_REPLICA_URLS") {
            c.replica_urls = urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(|u| {
                    check_url(
                        &n("READ_REPLICA_URLS"),
                        u,
                        &["postgres", "postgresql", "sqlite"],
                    )
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(url) = var("REDIS_URL") {
            c.redis_url = Some(check_url(&n("REDIS_URL"), &url, &["redis", "rediss"])?);
        }
        if let Some(urls) = var("REDIS_CLUSTER_URLS") {
            c.redis_cluster = urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(|u| check_url(&n("REDIS_CLUSTER_URLS"), u, &["redis", "rediss"]))
                .collect::<Result<_, _>>()?;
            if c.redis_url.is_some() && !c.redis_cluster.is_empty() {
                return Err(Error::Config {
                    var: n("REDIS_CLUSTER_URLS"),
                    message: format!("set it or {}, not both", n("REDIS_URL")),
                });
            }
        }
        if let Some(v) = var("SEAWAY_REDIS_CA_FILE") {
            c.redis_ca_file = Some(v.into());
        }
        match (
            var("SEAWAY_REDIS_CLIENT_CERT"),
            var("SEAWAY_REDIS_CLIENT_KEY"),
        ) {
            (Some(cert), Some(key)) => c.redis_client_cert = Some((cert.into(), key.into())),
            (None, None) => {}
            (cert, _) => {
                let (set, unset) = if cert.is_some() {
                    ("SEAWAY_REDIS_CLIENT_CERT", "SEAWAY_REDIS_CLIENT_KEY")
                } else {
                    ("SEAWAY_REDIS_CLIENT_KEY", "SEAWAY_REDIS_CLIENT_CERT")
                };
                return Err(Error::Config {
                    var: n(unset),
                    message: format!("{} is set: a client certificate needs both", n(set)),
                });
            }
        }
        if let Some(v) = var("CACHE_TTL_SECS") {
            c.cache_ttl = Duration::from_secs(parse_num(&n("CACHE_TTL_SECS"), &v, 0, 86_400 * 30)?);
        }
        if let Some(v) = var("REPLICA_STRATEGY") {
            c.strategy = v.parse().map_err(|message| Error::Config {
                var: n("REPLICA_STRATEGY"),
                message,
            })?;
        }
        if let Some(v) = var("MAX_REPLICA_LAG_MS") {
            c.max_replica_lag =
                Duration::from_millis(parse_num(&n("MAX_REPLICA_LAG_MS"), &v, 0, 86_400_000)?);
        }
        if let Some(v) = var("HEALTH_CHECK_INTERVAL_MS") {
            c.health_check_interval = Duration::from_millis(parse_num(
                &n("HEALTH_CHECK_INTERVAL_MS"),
                &v,
                10,
                3_600_000,
            )?);
        }
        if let Some(v) = var("REPLICA_FALLBACK") {
            c.replica_fallback = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(Error::Config {
                        var: n("REPLICA_FALLBACK"),
                        message: format!("expected true or false, got {v:?}"),
                    });
                }
            };
        }
        if let Some(v) = var("DB_POOL_MIN_SIZE") {
            c.pool_min = parse_num(&n("DB_POOL_MIN_SIZE"), &v, 0, 1000)? as u32;
        }
        if let Some(v) = var("DB_POOL_MAX_SIZE") {
            c.pool_max = parse_num(&n("DB_POOL_MAX_SIZE"), &v, 1, 1000)? as u32;
        }
        if c.pool_min > c.pool_max {
            return Err(Error::Config {
                var: n("DB_POOL_MIN_SIZE"),
                message: format!(
                    "{} is above {} {}",
                    c.pool_min,
                    n("DB_POOL_MAX_SIZE"),
                    c.pool_max
                ),
            });
        }
        if let Some(v) = var("SEAWAY_CACHE_PREFIX") {
            c.key_prefix = v;
        }
        if let Some(v) = var("SEAWAY_L1_MAX_BYTES") {
            c.l1_max_bytes = parse_num(&n("SEAWAY_L1_MAX_BYTES"), &v, 0, u64::MAX / 2)?;
        }
        if let Some(v) = var("SEAWAY_REDIS_TIMEOUT_MS") {
            c.redis_timeout =
                Duration::from_millis(parse_num(&n("SEAWAY_REDIS_TIMEOUT_MS"), &v, 1, 60_000)?);
        }
        if let Some(v) = var("SEAWAY_REDIS_BACKOFF_MS") {
            c.redis_backoff =
                Duration::from_millis(parse_num(&n("SEAWAY_REDIS_BACKOFF_MS"), &v, 1, 600_000)?);
        }
        if let Some(v) = var("DB_STATEMENT_TIMEOUT_MS") {
            c.statement_timeout =
                Duration::from_millis(parse_num(&n("DB_STATEMENT_TIMEOUT_MS"), &v, 10, 3_600_000)?);
        }
        if let Some(v) = var("SEAWAY_CACHE_MAX_ENTRY_BYTES") {
            c.max_entry_bytes =
                parse_num(&n("SEAWAY_CACHE_MAX_ENTRY_BYTES"), &v, 0, 512 * 1024 * 1024)? as usize;
        }
        if let Some(v) = var("SEAWAY_TOKEN_SECRET") {
            if v.len() < MIN_TOKEN_SECRET_LEN {
                return Err(Error::Config {
                    var: n("SEAWAY_TOKEN_SECRET"),
                    message: format!(
                        "too short: use at least {MIN_TOKEN_SECRET_LEN} random characters"
                    ),
                });
            }
            c.token_secret = Some(v);
        }
        Ok(c)
    }

    /// Checks what [`from_env`](Self::from_env) checks, for a configuration
    /// built in code; [`Db::connect`](crate::Db::connect) calls it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the field (by its variable's name).
    pub fn validate(&self) -> Result<(), Error> {
        check_url(
            "DATABASE_URL",
            &self.database_url,
            &["postgres", "postgresql", "sqlite"],
        )?;
        for u in &self.replica_urls {
            check_url(
                "READ_REPLICA_URLS",
                u,
                &["postgres", "postgresql", "sqlite"],
            )?;
        }
        for u in self.aliases.values() {
            check_url("aliases", u, &["postgres", "postgresql", "sqlite"])?;
        }
        if let Some(u) = &self.redis_url {
            check_url("REDIS_URL", u, &["redis", "rediss"])?;
        }
        for u in &self.redis_cluster {
            check_url("REDIS_CLUSTER_URLS", u, &["redis", "rediss"])?;
        }
        if self.redis_url.is_some() && !self.redis_cluster.is_empty() {
            return Err(Error::Config {
                var: "REDIS_CLUSTER_URLS".into(),
                message: "set it or REDIS_URL, not both".into(),
            });
        }
        let bad = |var: &str, message: String| {
            Err(Error::Config {
                var: var.to_owned(),
                message,
            })
        };
        if self.pool_max == 0 {
            return bad("DB_POOL_MAX_SIZE", "must be at least 1".into());
        }
        if self.pool_min > self.pool_max {
            return bad(
                "DB_POOL_MIN_SIZE",
                format!(
                    "{} is above DB_POOL_MAX_SIZE {}",
                    self.pool_min, self.pool_max
                ),
            );
        }
        if self.statement_timeout < std::time::Duration::from_millis(10) {
            return bad("DB_STATEMENT_TIMEOUT_MS", "must be at least 10 ms".into());
        }
        if self.health_check_interval < std::time::Duration::from_millis(10) {
            return bad("HEALTH_CHECK_INTERVAL_MS", "must be at least 10 ms".into());
        }
        if self.redis_timeout.is_zero() {
            return bad("SEAWAY_REDIS_TIMEOUT_MS", "must be above zero".into());
        }
        if let Some(s) = &self.token_secret
            && s.len() < MIN_TOKEN_SECRET_LEN
        {
            return bad(
                "SEAWAY_TOKEN_SECRET",
                format!("too short: use at least {MIN_TOKEN_SECRET_LEN} random characters"),
            );
        }
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}', ' ', '\n']) {
            return bad(
                "SEAWAY_CACHE_PREFIX",
                "must be non-empty, without braces or spaces".into(),
            );
        }
        Ok(())
    }

    /// Whether the primary is SQLite (the embedded default).
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}

fn parse_num(var: &str, v: &str, min: u64, max: u64) -> Result<u64, Error> {
    let n: u64 = v.parse().map_err(|_| Error::Config {
        var: var.to_owned(),
        message: format!("expected a whole number, got {v:?}"),
    })?;
    if n < min || n > max {
        return Err(Error::Config {
            var: var.to_owned(),
            message: format!("{n} is outside {min}..={max}"),
        });
    }
    Ok(n)
}

fn check_url(var: &str, v: &str, schemes: &[&str]) -> Result<String, Error> {
    let scheme = v.split_once(':').map(|(s, _)| s).unwrap_or("");
    if !schemes.contains(&scheme) {
        return Err(Error::Config {
            var: var.to_owned(),
            message: format!(
                "{} is not a URL with scheme {}",
                redact_url(v),
                schemes.join(" or ")
            ),
        });
    }
    if scheme != "sqlite" && url::Url::parse(v).is_err() {
        return Err(Error::Config {
            var: var.to_owned(),
            message: format!("{} is not a valid URL", redact_url(v)),
        });
    }
    Ok(v.to_owned())
}

/// Builds a [`Config`] in code; every method takes `self` and returns it.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConfigBuilder(Config);

impl ConfigBuilder {
    /// The primary.
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.0.database_url = url.into();
        self
    }
    /// Adds a replica to the `read_replica` alias.
    pub fn replica(mut self, url: impl Into<String>) -> Self {
        self.0.replica_urls.push(url.into());
        self
    }
    /// Adds a named alias with its own pool, for a custom [`DatabaseRouter`](crate::DatabaseRouter).
    pub fn alias(mut self, name: impl Into<String>, url: impl Into<String>) -> Self {
        self.0.aliases.insert(name.into(), url.into());
        self
    }
    /// Enables the L2 cache and cross-instance invalidation.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.0.redis_url = Some(url.into());
        self
    }
    /// A Redis Cluster, by some of its nodes ([`Config::redis_cluster`]).
    pub fn redis_cluster<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.0.redis_cluster = nodes.into_iter().map(Into::into).collect();
        self
    }
    /// The CA that signed Redis's certificate, a PEM file
    /// ([`Config::redis_ca_file`]).
    pub fn redis_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.0.redis_ca_file = Some(path.into());
        self
    }
    /// A client certificate and its key for Redis, PEM files
    /// ([`Config::redis_client_cert`]).
    pub fn redis_client_cert(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.0.redis_client_cert = Some((cert.into(), key.into()));
        self
    }
    /// Cache time-to-live.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.0.cache_ttl = ttl;
        self
    }
    /// Redis key and channel namespace.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.0.key_prefix = prefix.into();
        self
    }
    /// L1 size bound in bytes.
    pub fn l1_max_bytes(mut self, bytes: u64) -> Self {
        self.0.l1_max_bytes = bytes;
        self
    }
    /// Replica balancing.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.0.strategy = strategy;
        self
    }
    /// Lag bound.
    pub fn max_replica_lag(mut self, lag: Duration) -> Self {
        self.0.max_replica_lag = lag;
        self
    }
    /// Probe period.
    pub fn health_check_interval(mut self, every: Duration) -> Self {
        self.0.health_check_interval = every;
        self
    }
    /// Fallback to the primary with no usable replica.
    pub fn replica_fallback(mut self, on: bool) -> Self {
        self.0.replica_fallback = on;
        self
    }
    /// Pool bounds.
    pub fn pool(mut self, min: u32, max: u32) -> Self {
        self.0.pool_min = min;
        self.0.pool_max = max.max(1);
        self
    }
    /// Redis call timeout and circuit-breaker back-off.
    pub fn redis_timeouts(mut self, timeout: Duration, backoff: Duration) -> Self {
        self.0.redis_timeout = timeout;
        self.0.redis_backoff = backoff;
        self
    }
    /// Every statement's time bound.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.0.statement_timeout = timeout;
        self
    }
    /// Results larger than this are not stored in Redis.
    pub fn max_entry_bytes(mut self, bytes: usize) -> Self {
        self.0.max_entry_bytes = bytes;
        self
    }
    /// The key that signs consistency tokens (every instance must share it).
    pub fn token_secret(mut self, secret: impl Into<String>) -> Self {
        self.0.token_secret = Some(secret.into());
        self
    }
    /// Shapes each server's SeaORM `ConnectOptions` after Seaway's own.
    ///
    /// ```
    /// let config = seaway::Config::builder()
    ///     .connect_options(|_server, opts| {
    ///         opts.set_schema_search_path("app");
    ///     })
    ///     .build();
    /// # let _ = config;
    /// ```
    pub fn connect_options(
        mut self,
        f: impl Fn(Server<'_>, &mut sea_orm::ConnectOptions) + Send + Sync + 'static,
    ) -> Self {
        self.0.connect_options = Some(std::sync::Arc::new(f));
        self
    }
    /// Whether connecting asks the servers who they are (off for a
    /// `MockDatabase`).
    pub fn introspect(mut self, on: bool) -> Self {
        self.0.introspect = on;
        self
    }
    /// SQLite: WAL mode for the file, and its directory created when missing
    /// (what an embedded service wants; a library does neither by itself).
    pub fn sqlite_file_defaults(mut self, on: bool) -> Self {
        self.0.sqlite_wal = on;
        self.0.create_dirs = on;
        self
    }
    /// The finished configuration.
    pub fn build(self) -> Config {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_cluster_urls_are_read_and_exclude_redis_url() {
        let c = Config::from_lookup(|k| {
            (k == "REDIS_CLUSTER_URLS").then(|| "redis://a:1/, redis://b:2/".to_owned())
        })
        .expect("a cluster");
        assert_eq!(c.redis_cluster, ["redis://a:1/", "redis://b:2/"]);
        let e = Config::from_lookup(|k| match k {
            "REDIS_CLUSTER_URLS" => Some("redis://a:1/".into()),
            "REDIS_URL" => Some("redis://b/".into()),
            _ => None,
        })
        .expect_err("both");
        assert!(e.to_string().contains("REDIS_CLUSTER_URLS"), "{e}");
        let e =
            Config::from_lookup(|k| (k == "REDIS_CLUSTER_URLS").then(|| "http://x/".to_owned()))
                .expect_err("not redis");
        assert!(e.to_string().contains("REDIS_CLUSTER_URLS"), "{e}");
    }
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_without_environment() {
        let c = from(&[]).expect("defaults");
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert!(c.replica_urls.is_empty() && c.redis_url.is_none());
        assert_eq!((c.pool_min, c.pool_max), (2, 10));
        assert!(c.replica_fallback);
    }

    #[test]
    fn errors_name_the_variable_and_hide_passwords() {
        let cases: &[(&str, &str, &str)] = &[
            ("CACHE_TTL_SECS", "abc", "CACHE_TTL_SECS"),
            ("REPLICA_STRATEGY", "fastest", "REPLICA_STRATEGY"),
            ("MAX_REPLICA_LAG_MS", "-1", "MAX_REPLICA_LAG_MS"),
            ("HEALTH_CHECK_INTERVAL_MS", "0", "HEALTH_CHECK_INTERVAL_MS"),
            ("REPLICA_FALLBACK", "maybe", "REPLICA_FALLBACK"),
            ("DB_POOL_MAX_SIZE", "0", "DB_POOL_MAX_SIZE"),
            ("DATABASE_URL", "mysql://u:pw@h/d", "DATABASE_URL"),
            ("REDIS_URL", "http://u:pw@h", "REDIS_URL"),
            (
                "READ_REPLICA_URLS",
                "postgres://u:pw@h/d,nope",
                "READ_REPLICA_URLS",
            ),
            ("DB_STATEMENT_TIMEOUT_MS", "0", "DB_STATEMENT_TIMEOUT_MS"),
            (
                "SEAWAY_CACHE_MAX_ENTRY_BYTES",
                "x",
                "SEAWAY_CACHE_MAX_ENTRY_BYTES",
            ),
            ("SEAWAY_TOKEN_SECRET", "short", "SEAWAY_TOKEN_SECRET"),
            // a client certificate without its key, and a key alone
            (
                "SEAWAY_REDIS_CLIENT_CERT",
                "/c.pem",
                "SEAWAY_REDIS_CLIENT_KEY",
            ),
            (
                "SEAWAY_REDIS_CLIENT_KEY",
                "/c.key",
                "SEAWAY_REDIS_CLIENT_CERT",
            ),
        ];
        for (var, value, named) in cases {
            let err = from(&[(var, value)]).expect_err(var).to_string();
            assert!(err.contains(named), "{var}: {err}");
            assert!(!err.contains("pw@"), "{var} leaks a password: {err}");
        }
    }

    #[test]
    fn debug_redacts_urls() {
        let c = Config::builder()
            .database_url("postgres://u:s3cr3t-pw@h/d")
            .replica("postgres://u:s3cr3t-pw@r/d")
            .redis_url("redis://:s3cr3t-pw@h/")
            .build();
        assert!(!format!("{c:?}").contains("s3cr3t-pw"));
    }

    #[test]
    fn replica_list_is_split_and_trimmed() {
        let c = from(&[("READ_REPLICA_URLS", " postgres://a/x , postgres://b/x ,")]).expect("ok");
        assert_eq!(c.replica_urls, vec!["postgres://a/x", "postgres://b/x"]);
    }
}
