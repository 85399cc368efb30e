//! L2: entries, tag versions and the epoch in Redis, each call bounded by a
//! timeout and guarded by the [`Breaker`].
//!
//! Keys, under the configured prefix `p` and the namespace `ns` (a hash of
//! the database's identity: cluster, database, user, search path, alias):
//! * `p:ns:q:<format>:<hash>`: an entry (postcard), with a TTL;
//! * `{p:ns}:seq`: the namespace's version counter (no TTL);
//! * `{p:ns}:tv:<tag>`: the version of a tag's last invalidation (no TTL);
//! * `{p:ns}:tl:<tag>`: the primary's LSN after it, 16 hex digits (no TTL);
//! * `{p:ns}:rows`: row tags by the time of their last write, so that idle
//!   ones are deleted once no entry can depend on them;
//! * `{p:ns}:epoch`: the epoch, `<run_id>:<random>`;
//! * channel `{p:ns}:inv`: invalidations and heartbeats.
//!
//! Everything but the entries shares one hash slot (the `{..}` part), so the
//! invalidation script can touch it atomically, on one Redis or a cluster.
//!
//! # Redis memory
//!
//! Entries carry a TTL and versions carry none: run Redis with a `volatile-*`
//! `maxmemory-policy` (`volatile-lru`), which evicts only entries. Under an
//! `allkeys-*` policy a version could be evicted and an old entry become
//! valid again; `L2::check_policy` warns at start.

use super::breaker::Breaker;
use crate::config::Config;
use crate::error::{Error, redact_url};
use crate::lsn::Lsn;
use crate::tag::TagId;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use std::sync::Arc;
use std::time::Duration;

/// Makes sure the epoch is this server's: a server that restarted, was
/// restored from a snapshot or took over by failover has another run id, and
/// gets a new epoch (which no entry or version of the old one carries).
/// With ARGV[2] and ARGV[3], then publishes ARGV[3] on channel ARGV[2]:
/// each heartbeat runs it, so a replica that took over is found out within
/// a heartbeat, however fast it took over, and whichever node the bus
/// listens on (`a_killed_versions_master_gives_every_instance_a_new_epoch`).
const ENSURE_EPOCH: &str = r"
local cur = redis.call('GET', KEYS[1])
local ok, info = pcall(redis.call, 'INFO', 'server')
local rid = 'norunid'
if ok and info then rid = string.match(info, 'run_id:(%w+)') or 'norunid' end
local keep = cur and (string.sub(cur, 1, #rid + 1) == rid .. ':' or rid == 'norunid')
if not keep then
  cur = rid .. ':' .. ARGV[1]
  redis.call('SET', KEYS[1], cur)
end
if ARGV[2] then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return cur
";

/// One invalidation, atomically: check the epoch, take a new version, set
/// every tag's version and LSN, index row tags, and announce it.
/// KEYS: epoch, seq, rows, then (tv, tl) per tag. ARGV: epoch, lsn (16
/// hex), channel, instance, row flags ('1'/'0' per tag), then the tags' hex.
///
/// A version is the last one plus one, or the server's clock in
/// microseconds when that is larger: a replica that took over from a
/// master killed before it replicated its last versions (Redis replicates
/// asynchronously) still gives every later write a version above all the
/// lost ones, which instances that heard them already hold (a version only
/// grows, `Versions::apply`); a plain counter would give them again, and the
/// writes that got them would invalidate nothing
/// (`a_lost_version_never_makes_a_later_write_invalidate_nothing`).
/// Integers stay exact in Lua's doubles until 2^53 µs (the year 2255).
///
/// Returns `{version, replicas, {lsn, ..}}`: the server's connected
/// replicas (-1 when `INFO` is refused), which tells [`L2::invalidate`]
/// whether to wait for one, and each tag's invalidation LSN as it now is
/// (the largest any write of it brought): see [`Taken::lsns`].
const INVALIDATE: &str = r"
local e = redis.call('GET', KEYS[1])
if e ~= ARGV[1] then return redis.error_reply('SEAWAY_EPOCH') end
local t = redis.call('TIME')
local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
if us > v then v = us end
v = string.format('%d', v)
redis.call('SET', KEYS[2], v)
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = (#KEYS - 3) / 2
local lsns = {}
local msg = ARGV[4] .. '\n' .. ARGV[1] .. '\n' .. ARGV[2] .. '\n' .. v
for i = 1, n do
  redis.call('SET', KEYS[2 + 2 * i], v)
  local tl = KEYS[3 + 2 * i]
  local cur = redis.call('GET', tl)
  if (not cur) or cur < ARGV[2] then
    redis.call('SET', tl, ARGV[2])
    cur = ARGV[2]
  end
  lsns[i] = cur
  if string.sub(ARGV[5], i, i) == '1' then redis.call('ZADD', KEYS[3], ms, ARGV[5 + i]) end
  msg = msg .. '\n' .. ARGV[5 + i]
end
redis.call('PUBLISH', ARGV[3], msg)
local replicas = -1
local ok, info = pcall(redis.call, 'INFO', 'replication')
if ok and info then replicas = tonumber(string.match(info, 'connected_slaves:(%d+)') or '-1') end
return {tonumber(v), replicas, lsns}
";

/// [`INVALIDATE`], hashed once.
fn invalidate_script() -> &'static redis::Script {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(INVALIDATE));
    &SCRIPT
}

/// Deletes row tags whose last write is older than ARGV[2] (ms). KEYS: rows.
/// ARGV: the key base, the cut-off.
const SWEEP: &str = r"
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, 1000)
for _, t in ipairs(old) do
  redis.call('DEL', ARGV[1] .. ':tv:' .. t, ARGV[1] .. ':tl:' .. t)
end
if #old > 0 then redis.call('ZREM', KEYS[1], unpack(old)) end
return #old
";

/// How long an invalidation waits for a replica of its master to
/// acknowledge it (`WAIT 1`), at most: half the Redis timeout.
fn wait_timeout(timeout: Duration) -> Duration {
    (timeout / 2).max(Duration::from_millis(1))
}

/// After a `WAIT` that no replica answered in time, how long invalidations
/// are sent without one (and count as unacknowledged): a slow or paused
/// replica then holds the invalidation connection once per period, not once
/// per write.
const SLOW_REPLICA: Duration = Duration::from_secs(1);

/// An invalidation Redis took.
#[derive(Debug, Clone)]
pub(crate) struct Taken {
    /// Its version.
    pub(crate) version: u64,
    /// Whether it survives a failover: a replica of the master acknowledged
    /// it, or the master has no replica (none could take over without it).
    /// Otherwise it stays pending here and is sent again.
    pub(crate) durable: bool,
    /// Each tag's invalidation LSN in Redis after it: the largest of every
    /// write of the tag, this one's and any other instance's. Another
    /// instance's write of a tag may come before this one in version order
    /// and after it in the primary's WAL; its message can reach this
    /// instance after this reply, and a version below the one known changes
    /// nothing. Taking the tag's LSN from the reply keeps a replica that
    /// has not replayed that write from filling an entry of the tag in the
    /// meantime
    /// (`a_write_whose_version_comes_first_but_lsn_later_refuses_a_replica_behind_it`).
    pub(crate) lsns: Vec<u64>,
}

/// Why an invalidation was not taken.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Redis holds another epoch (or none): learn it, then send again.
    Epoch,
    /// Redis did not answer, or failed.
    Failed,
}

/// Keys of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    entry: String,
    base: String,
    pub(crate) channel: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, ns: u64) -> Self {
        Self {
            entry: format!("{prefix}:{ns:016x}:q:{}", super::FORMAT_VERSION),
            base: format!("{{{prefix}:{ns:016x}}}"),
            channel: format!("{{{prefix}:{ns:016x}}}:inv"),
        }
    }
    fn entry(&self, key: u128) -> String {
        format!("{}:{key:032x}", self.entry)
    }
    fn tv(&self, t: TagId) -> String {
        format!("{}:tv:{:016x}", self.base, t.0)
    }
    fn tl(&self, t: TagId) -> String {
        format!("{}:tl:{:016x}", self.base, t.0)
    }
    fn epoch(&self) -> String {
        format!("{}:epoch", self.base)
    }
    fn seq(&self) -> String {
        format!("{}:seq", self.base)
    }
    fn rows(&self) -> String {
        format!("{}:rows", self.base)
    }
}

/// How this instance reaches Redis: one server, or a Redis Cluster (its
/// connection made at the first call, then kept: it follows slot moves and
/// failovers itself).
///
/// Invalidations have a connection of their own (`writes`): the `WAIT` that
/// follows one blocks its connection on the server until a replica answers,
/// and must not hold up the reads of L2 on the other.
enum Link {
    /// [`READS`], [`WRITES`].
    Single([ConnectionManager; 2]),
    Cluster(Box<ClusterLink>),
}

/// The connection of L2's reads and stores (and the heartbeats).
const READS: usize = 0;
/// The connection of invalidations and their `WAIT`.
const WRITES: usize = 1;

/// A Redis Cluster: its client, and the connections made at the first call.
struct ClusterLink {
    client: ClusterClient,
    /// [`READS`], [`WRITES`].
    conns: [tokio::sync::OnceCell<ClusterConnection>; 2],
}

/// A connection of either kind, for one call.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The Redis tier.
pub(crate) struct L2 {
    /// Where the bus subscribes: the server, or each node of a cluster in
    /// turn (a PUBLISH reaches the subscribers of every node).
    pub(crate) bus_clients: Vec<redis::Client>,
    link: Link,
    pub(crate) keys: Keys,
    pub(crate) instance: u64,
    pub(crate) timeout: Duration,
    pub(crate) backoff: Duration,
    pub(crate) breaker: Breaker,
    /// The versions' master's connected replicas at the last invalidation
    /// (-1: not known).
    replicas: std::sync::atomic::AtomicI64,
    /// Until when invalidations are sent without `WAIT` (a replica was slow).
    slow_until: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// One `WAIT` at a time on the invalidation connection.
    waiting: tokio::sync::Mutex<()>,
}

/// Versions of tags as one reply gave them: `(version, lsn)`, and the epoch.
pub(crate) struct Remote {
    pub(crate) epoch: Option<String>,
    pub(crate) versions: Vec<(u64, u64)>,
}

fn parse_versions(nums: &[Option<String>]) -> Vec<(u64, u64)> {
    nums.chunks(2)
        .map(|c| {
            let v = c[0].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
            let l = c
                .get(1)
                .and_then(|x| x.as_deref())
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .unwrap_or(0);
            (v, l)
        })
        .collect()
}

/// A Redis client for `url`: plain, or TLS (`rediss://`) with the
/// configured CA or the system's roots.
fn client(url: &str, config: &Config) -> Result<redis::Client, Error> {
    let bad = |var: &str, message: String| Error::Config {
        var: var.into(),
        message,
    };
    let url_error = |e: redis::RedisError| {
        bad(
            "REDIS_URL",
            format!(
                "{}: {}",
                redact_url(url),
                crate::error::scrub(&e.to_string(), url)
            ),
        )
    };
    let tls = url.starts_with("rediss:");
    if tls && !cfg!(feature = "rustls") {
        return Err(bad(
            "REDIS_URL",
            "rediss:// needs TLS: build seaway with its `rustls` feature".into(),
        ));
    }
    if !tls {
        for (set, var) in [
            (config.redis_ca_file.is_some(), "SEAWAY_REDIS_CA_FILE"),
            (
                config.redis_client_cert.is_some(),
                "SEAWAY_REDIS_CLIENT_CERT",
            ),
        ] {
            if set {
                return Err(bad(
                    var,
                    "is set but REDIS_URL is not rediss:// (TLS)".into(),
                ));
            }
        }
        return redis::Client::open(url).map_err(url_error);
    }
    #[cfg(feature = "rustls")]
    if let Some(certs) = tls_certificates(config)? {
        return redis::Client::build_with_tls(url, certs).map_err(url_error);
    }
    redis::Client::open(url).map_err(url_error)
}

/// The private CA and the client certificate of the configuration, read
/// from their files; `None` when neither is set (the system's roots, no
/// client certificate).
#[cfg(feature = "rustls")]
fn tls_certificates(config: &Config) -> Result<Option<redis::TlsCertificates>, Error> {
    let read = |var: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| Error::Config {
            var: var.into(),
            message: format!("cannot read {}: {e}", path.display()),
        })
    };
    let root_cert = match &config.redis_ca_file {
        Some(path) => Some(read("SEAWAY_REDIS_CA_FILE", path)?),
        None => None,
    };
    let client_tls = match &config.redis_client_cert {
        Some((cert, key)) => Some(redis::ClientTlsConfig {
            client_cert: read("SEAWAY_REDIS_CLIENT_CERT", cert)?,
            client_key: read("SEAWAY_REDIS_CLIENT_KEY", key)?,
        }),
        None => None,
    };
    Ok(
        (root_cert.is_some() || client_tls.is_some()).then_some(redis::TlsCertificates {
            client_tls,
            root_cert,
        }),
    )
}

/// A client for a Redis Cluster reached through `nodes`.
fn cluster_client(nodes: &[String], config: &Config) -> Result<ClusterClient, Error> {
    let bad = |e: redis::RedisError| Error::Config {
        var: "REDIS_CLUSTER_URLS".into(),
        message: nodes
            .iter()
            .fold(e.to_string(), |m, u| crate::error::scrub(&m, u)),
    };
    #[allow(unused_mut)]
    let mut b = ClusterClient::builder(nodes.iter().map(String::as_str))
        .connection_timeout(config.redis_timeout)
        .response_timeout(config.redis_timeout)
        .retries(1);
    #[cfg(feature = "rustls")]
    if let Some(certs) = tls_certificates(config)? {
        b = b.certs(certs);
    }
    b.build().map_err(bad)
}

impl L2 {
    pub(crate) fn new(url: &str, config: &Config, ns: u64) -> Result<Self, Error> {
        let (link, bus_clients) = if config.redis_cluster.is_empty() {
            let client = client(url, config)?;
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.redis_timeout))
                .set_response_timeout(Some(config.redis_timeout))
                .set_number_of_retries(1)
                .set_max_delay(config.redis_backoff);
            let manager = || {
                ConnectionManager::new_lazy_with_config(client.clone(), cfg.clone()).map_err(|e| {
                    Error::Connect {
                        url: redact_url(url),
                        message: crate::error::scrub(&e.to_string(), url),
                    }
                })
            };
            let conns = [manager()?, manager()?];
            (Link::Single(conns), vec![client])
        } else {
            let nodes = &config.redis_cluster;
            let bus = nodes
                .iter()
                .map(|u| client(u, config))
                .collect::<Result<Vec<_>, _>>()?;
            (
                Link::Cluster(Box::new(ClusterLink {
                    client: cluster_client(nodes, config)?,
                    conns: Default::default(),
                })),
                bus,
            )
        };
        Ok(Self {
            bus_clients,
            link,
            keys: Keys::new(&config.key_prefix, ns),
            instance: rand::random(),
            timeout: config.redis_timeout,
            backoff: config.redis_backoff,
            breaker: Breaker::new(config.redis_backoff),
            replicas: std::sync::atomic::AtomicI64::new(-1),
            slow_until: std::sync::Mutex::new(None),
            waiting: tokio::sync::Mutex::new(()),
        })
    }

    /// Connection `which` ([`READS`] or [`WRITES`], see [`Link`]) for one
    /// call; a cluster's is made at the first.
    async fn link(&self, which: usize) -> redis::RedisResult<Conn> {
        match &self.link {
            Link::Single(conns) => Ok(Conn::Single(conns[which].clone())),
            Link::Cluster(l) => l.conns[which]
                .get_or_try_init(|| l.client.get_async_connection())
                .await
                .map(|c| Conn::Cluster(c.clone())),
        }
    }

    /// The connection of reads and stores.
    async fn connection(&self) -> redis::RedisResult<Conn> {
        self.link(READS).await
    }

    /// Whether a replica was slow to acknowledge within [`SLOW_REPLICA`].
    fn replica_slow(&self) -> bool {
        let slow = self.slow_until.lock().unwrap_or_else(|e| e.into_inner());
        slow.is_some_and(|t| tokio::time::Instant::now() < t)
    }

    /// Runs `f` with the timeout and the breaker; `None` when skipped or failed.
    async fn call<T, F, Fut>(&self, what: &str, f: F) -> Option<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let permit = self.breaker.allow()?;
        let run = async {
            let c = self.connection().await?;
            f(c).await
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(v)) => {
                permit.succeeded();
                Some(v)
            }
            Ok(Err(e)) => {
                permit.failed(what, &e.to_string());
                None
            }
            Err(_) => {
                permit.failed(what, "timeout");
                None
            }
        }
    }

    fn version_args(&self, cmd: &mut redis::Cmd, tags: &[TagId]) {
        cmd.arg(self.keys.epoch());
        for t in tags {
            cmd.arg(self.keys.tv(*t)).arg(self.keys.tl(*t));
        }
    }

    /// The entry under `key`, the epoch and the versions of `tags`, in one
    /// round trip.
    pub(crate) async fn get(&self, key: u128, tags: &[TagId]) -> Option<(Option<Vec<u8>>, Remote)> {
        let mut get = redis::cmd("GET");
        get.arg(self.keys.entry(key));
        let mut mget = redis::cmd("MGET");
        self.version_args(&mut mget, tags);
        let (entry, nums): (Option<Vec<u8>>, Vec<Option<String>>) = match self.link {
            // one round trip: a pipeline
            Link::Single(_) => {
                let mut p = redis::pipe();
                p.add_command(get).add_command(mget);
                self.call("get", |mut c| async move { p.query_async(&mut c).await })
                    .await?
            }
            // the entry and the versions live in different slots, which a
            // cluster pipeline refuses: both at once, on their nodes
            Link::Cluster(_) => {
                self.call("get", |c| async move {
                    let (mut c1, mut c2) = (c.clone(), c);
                    let (e, n) = futures::try_join!(
                        get.query_async::<Option<Vec<u8>>>(&mut c1),
                        mget.query_async::<Vec<Option<String>>>(&mut c2)
                    )?;
                    Ok((e, n))
                })
                .await?
            }
        };
        if nums.len() != 1 + 2 * tags.len() {
            return None;
        }
        Some((
            entry,
            Remote {
                epoch: nums[0].clone(),
                versions: parse_versions(&nums[1..]),
            },
        ))
    }

    /// The epoch and the versions of `tags`.
    pub(crate) async fn versions(&self, tags: &[TagId]) -> Option<Remote> {
        let mut mget = redis::cmd("MGET");
        self.version_args(&mut mget, tags);
        let nums: Vec<Option<String>> = self
            .call(
                "versions",
                |mut c| async move { mget.query_async(&mut c).await },
            )
            .await?;
        if nums.len() != 1 + 2 * tags.len() {
            return None;
        }
        Some(Remote {
            epoch: nums[0].clone(),
            versions: parse_versions(&nums[1..]),
        })
    }

    /// Stores an entry in the background: a request never waits for it.
    pub(crate) fn put(self: &Arc<Self>, key: u128, bytes: Vec<u8>, ttl: Duration) {
        if !self.breaker.healthy() {
            return;
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.entry(key))
            .arg(bytes)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let _: Option<()> = this
                .call("set", |mut c| async move { cmd.query_async(&mut c).await })
                .await;
        });
    }

    /// Moves `tags` (`(tag, is a row tag)`) in epoch `epoch` and announces
    /// it, on the invalidation connection.
    ///
    /// Redis replicates asynchronously: a master killed before its replica
    /// got the new versions leaves a replica that takes over without them,
    /// and an instance that missed the announcement would keep what they
    /// invalidate. So when the master has replicas, the script is followed
    /// by `WAIT 1` in the same pipeline (the same connection, which `WAIT`
    /// needs), and an invalidation no replica acknowledged is not
    /// [`durable`](Taken::durable): it stays pending and is sent again
    /// (`an_invalidation_no_redis_replica_acknowledged_is_sent_again`).
    pub(crate) async fn invalidate(
        &self,
        epoch: &str,
        tags: &[(TagId, bool)],
        lsn: Lsn,
    ) -> Result<Taken, Refused> {
        let mut keys = vec![self.keys.epoch(), self.keys.seq(), self.keys.rows()];
        for (t, _) in tags {
            keys.push(self.keys.tv(*t));
            keys.push(self.keys.tl(*t));
        }
        let flags: String = tags
            .iter()
            .map(|(_, row)| if *row { '1' } else { '0' })
            .collect();
        let mut args = vec![
            epoch.to_owned(),
            format!("{:016x}", lsn.0),
            self.keys.channel.clone(),
            format!("{:x}", self.instance),
            flags,
        ];
        args.extend(tags.iter().map(|(t, _)| t.hex()));
        let Some(permit) = self.breaker.allow() else {
            return Err(Refused::Failed);
        };
        let replicas = self.replicas.load(std::sync::atomic::Ordering::Relaxed);
        let mut wait = replicas > 0 && !self.replica_slow();
        let _one = if wait {
            let g = self.waiting.lock().await;
            // the WAIT before this one may have found the replica slow
            wait = !self.replica_slow();
            Some(g)
        } else {
            None
        };
        let run = async {
            let mut conn = self.link(WRITES).await?;
            if wait {
                // EVAL, not EVALSHA: a pipeline cannot load a script Redis
                // does not know and send the command again
                let mut p = redis::pipe();
                p.cmd("EVAL")
                    .arg(INVALIDATE)
                    .arg(keys.len())
                    .arg(&keys)
                    .arg(&args)
                    .cmd("WAIT")
                    .arg(1)
                    .arg(wait_timeout(self.timeout).as_millis() as u64);
                let ((v, n, l), acks): ((u64, i64, Vec<String>), i64) =
                    p.query_async(&mut conn).await?;
                Ok((v, n, l, Some(acks)))
            } else {
                let script = invalidate_script();
                let mut inv = script.prepare_invoke();
                inv.key(&keys).arg(&args);
                let (v, n, l): (u64, i64, Vec<String>) = inv.invoke_async(&mut conn).await?;
                Ok::<_, redis::RedisError>((v, n, l, None))
            }
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok((version, replicas, lsns, acks))) => {
                permit.succeeded();
                self.replicas
                    .store(replicas, std::sync::atomic::Ordering::Relaxed);
                let durable = match acks {
                    Some(a) if a >= 1 => true,
                    // no replica could take over without it (or `INFO` is
                    // refused, and nothing can be known)
                    _ if replicas <= 0 => true,
                    Some(_) => {
                        let mut slow = self.slow_until.lock().unwrap_or_else(|e| e.into_inner());
                        *slow = Some(tokio::time::Instant::now() + SLOW_REPLICA);
                        tracing::warn!(
                            "no Redis replica acknowledged an invalidation in {:?}: it stays pending",
                            wait_timeout(self.timeout)
                        );
                        false
                    }
                    // sent without waiting, and the master has replicas
                    None => false,
                };
                // the script writes them (16 hex digits); one it could not
                // have written counts as none, and the write's own applies
                let lsns = lsns
                    .iter()
                    .map(|l| u64::from_str_radix(l, 16).unwrap_or(0))
                    .collect();
                Ok(Taken {
                    version,
                    durable,
                    lsns,
                })
            }
            Ok(Err(e)) if e.to_string().contains("SEAWAY_EPOCH") => {
                permit.succeeded();
                Err(Refused::Epoch)
            }
            Ok(Err(e)) => {
                permit.failed("invalidate", &e.to_string());
                Err(Refused::Failed)
            }
            Err(_) => {
                permit.failed("invalidate", "timeout");
                Err(Refused::Failed)
            }
        }
    }

    /// The current epoch, made this server's if it was not.
    pub(crate) async fn ensure_epoch(&self) -> Option<String> {
        let key = self.keys.epoch();
        let fresh = format!("{:016x}", rand::random::<u64>());
        self.call("epoch", |mut c| async move {
            redis::Script::new(ENSURE_EPOCH)
                .key(key)
                .arg(fresh)
                .invoke_async::<String>(&mut c)
                .await
        })
        .await
    }

    /// Deletes row tags idle for longer than `idle`.
    pub(crate) async fn sweep(&self, idle: Duration) {
        let rows = self.keys.rows();
        let base = self.keys.base.clone();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let cutoff = now_ms.saturating_sub(idle.as_millis() as u64);
        let _: Option<u64> = self
            .call("sweep", |mut c| async move {
                redis::Script::new(SWEEP)
                    .key(rows)
                    .arg(base)
                    .arg(cutoff)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
    }

    /// Publishes this instance's heartbeat `n` on the channel, from the
    /// versions' slot, after making sure of the epoch there: the epoch, or
    /// `None` when Redis did not take it.
    pub(crate) async fn heartbeat(&self, n: u64) -> Option<String> {
        let key = self.keys.epoch();
        let fresh = format!("{:016x}", rand::random::<u64>());
        let channel = self.keys.channel.clone();
        let beat = format!("h {:x} {n}", self.instance);
        self.call("heartbeat", |mut c| async move {
            redis::Script::new(ENSURE_EPOCH)
                .key(key)
                .arg(fresh)
                .arg(channel)
                .arg(beat)
                .invoke_async::<String>(&mut c)
                .await
        })
        .await
    }

    /// Warns when Redis may evict versions (an `allkeys-*` policy).
    pub(crate) async fn check_policy(&self) {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        let run = async {
            let mut conn = self.connection().await?;
            cmd.query_async::<Vec<String>>(&mut conn).await
        };
        if let Ok(Ok(v)) = tokio::time::timeout(self.timeout, run).await
            && let Some(policy) = v.get(1)
            && policy.starts_with("allkeys")
        {
            tracing::warn!(
                policy = %policy,
                "redis maxmemory-policy may evict tag versions: use volatile-lru so that only cache entries are evicted"
            );
        }
    }
}

/// A message on the channel.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message {
    /// An instance's heartbeat.
    Heartbeat { instance: u64, n: u64 },
    /// Tags moved to `version` in `epoch` after a write at `lsn`.
    Invalidation {
        instance: u64,
        epoch: String,
        lsn: u64,
        version: u64,
        tags: Vec<TagId>,
    },
}

/// Parses a channel message (see the `INVALIDATE` script for the form).
pub(crate) fn parse(payload: &str) -> Option<Message> {
    if let Some(rest) = payload.strip_prefix("h ") {
        let (i, n) = rest.split_once(' ')?;
        return Some(Message::Heartbeat {
            instance: u64::from_str_radix(i, 16).ok()?,
            n: n.parse().ok()?,
        });
    }
    let mut lines = payload.split('\n');
    let instance = u64::from_str_radix(lines.next()?, 16).ok()?;
    let epoch = lines.next()?.to_owned();
    let lsn = u64::from_str_radix(lines.next()?, 16).ok()?;
    let version = lines.next()?.parse().ok()?;
    let tags = lines
        .map(|l| u64::from_str_radix(l, 16).ok().map(TagId))
        .collect::<Option<Vec<_>>>()?;
    Some(Message::Invalidation {
        instance,
        epoch,
        lsn,
        version,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse() {
        assert_eq!(
            parse("h ff 3"),
            Some(Message::Heartbeat {
                instance: 255,
                n: 3
            })
        );
        assert_eq!(
            parse("ff\nabc:12\n00000000000000a0\n7\n0000000000000001\n0000000000000002"),
            Some(Message::Invalidation {
                instance: 255,
                epoch: "abc:12".into(),
                lsn: 160,
                version: 7,
                tags: vec![TagId(1), TagId(2)]
            })
        );
        assert_eq!(parse("zz"), None);
        assert_eq!(parse("1\ne\n1\nx"), None);
    }

    #[test]
    fn everything_but_entries_shares_one_hash_slot() {
        let k = Keys::new("seaway", 0xab);
        let slot = |key: &str| {
            let open = key.find('{').expect("{");
            let close = key[open..].find('}').expect("}") + open;
            key[open + 1..close].to_owned()
        };
        let tag = TagId(5);
        for key in [
            k.tv(tag),
            k.tl(tag),
            k.epoch(),
            k.seq(),
            k.rows(),
            k.channel.clone(),
        ] {
            assert_eq!(slot(&key), "seaway:00000000000000ab", "{key}");
        }
        assert!(!k.entry(1).contains('{'), "entries spread over the cluster");
    }
}
