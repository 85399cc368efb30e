//! L2: Redis. Entries, tag versions, the invalidation channel, and the circuit
//! breaker that keeps a slow or dead Redis from costing requests anything.
//!
//! Keys, under the configured prefix `p`:
//! * `p:q:<format>:<hash>`: an entry (postcard), with a TTL;
//! * `p:tv:<table>`: the table's version (INCR);
//! * `p:tl:<table>`: the primary LSN of the table's last invalidation;
//! * channel `p:invalidate`: `<instance>\n<version> <lsn> <table>\n...`.

use super::{FORMAT_VERSION, QueryCache};
use crate::classify::Tag;
use crate::config::Config;
use crate::error::{Error, redact_url};
use crate::lsn::Lsn;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Errors in a row that open the circuit.
const OPEN_AFTER: u32 = 2;

pub(crate) struct L2 {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    channel: String,
    instance: u64,
    timeout: Duration,
    backoff: Duration,
    failures: AtomicU32,
    errors: AtomicU64,
    open_until: Mutex<Option<Instant>>,
}

/// What one L2 round trip found.
pub(crate) struct Found {
    pub(crate) entry: Option<Vec<u8>>,
    /// (version, lsn) per tag, from Redis.
    pub(crate) versions: Vec<(u64, u64)>,
}

/// An entry as stored. The payload is written as postcard bytes (a length,
/// then the bytes) and read back borrowed, so a hit copies it nowhere.
#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    fresh_lsn: u64,
    versions: Vec<u64>,
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
}

pub(crate) struct Decoded<V> {
    pub(crate) value: V,
    pub(crate) fresh_lsn: u64,
    pub(crate) versions: Vec<u64>,
}

impl<V> Decoded<V> {
    pub(crate) fn versions_match(&self, tags: &[Tag], remote: &[(u64, u64)]) -> bool {
        self.versions.len() == tags.len()
            && self
                .versions
                .iter()
                .zip(remote)
                .all(|(mine, (theirs, _))| mine == theirs)
    }
}

/// Decodes an entry; anything that does not decode is `None` (a miss).
pub(crate) fn decode_entry<V: DeserializeOwned>(bytes: &[u8]) -> Option<Decoded<V>> {
    let env: Envelope = postcard::from_bytes(bytes).ok()?;
    let value = postcard::from_bytes(env.payload).ok()?;
    Some(Decoded {
        value,
        fresh_lsn: env.fresh_lsn,
        versions: env.versions,
    })
}

impl L2 {
    pub(crate) fn new(url: &str, config: &Config) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(|e| Error::Config {
            var: "REDIS_URL",
            message: format!("{}: {e}", redact_url(url)),
        })?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.redis_timeout))
            .set_response_timeout(Some(config.redis_timeout))
            .set_number_of_retries(1)
            .set_max_delay(config.redis_backoff);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), cfg).map_err(|e| {
            Error::Connect {
                url: redact_url(url),
                message: e.to_string(),
            }
        })?;
        Ok(Self {
            client,
            conn,
            prefix: config.key_prefix.clone(),
            channel: format!("{}:invalidate", config.key_prefix),
            instance: rand::random(),
            timeout: config.redis_timeout,
            backoff: config.redis_backoff,
            failures: AtomicU32::new(0),
            errors: AtomicU64::new(0),
            open_until: Mutex::new(None),
        })
    }

    fn entry_key(&self, key: u128) -> String {
        format!("{}:q:{FORMAT_VERSION}:{key:032x}", self.prefix)
    }

    fn allowed(&self) -> bool {
        match self.open_until.lock() {
            Ok(g) => g.is_none_or(|t| Instant::now() >= t),
            Err(_) => false,
        }
    }

    pub(crate) fn healthy(&self) -> bool {
        self.allowed() && self.failures.load(Relaxed) == 0
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Relaxed)
    }

    fn succeeded(&self) {
        if self.failures.swap(0, Relaxed) > 0 {
            tracing::info!("redis answers again");
        }
        if let Ok(mut g) = self.open_until.lock() {
            *g = None;
        }
    }

    fn failed(&self, what: &str, err: &str) {
        self.errors.fetch_add(1, Relaxed);
        metrics::counter!("seaway_cache_l2_errors_total").increment(1);
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        if n >= OPEN_AFTER
            && let Ok(mut g) = self.open_until.lock()
        {
            if g.is_none() {
                tracing::warn!(
                    error = err,
                    op = what,
                    "redis failing: skipping it for {:?}",
                    self.backoff
                );
            }
            *g = Some(Instant::now() + self.backoff);
        }
    }

    /// Runs `cmd` with the timeout and the breaker; `None` when skipped or failed.
    async fn call<T: redis::FromRedisValue>(&self, what: &str, cmd: &redis::Pipeline) -> Option<T> {
        if !self.allowed() {
            return None;
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => {
                self.succeeded();
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(what, &e.to_string());
                None
            }
            Err(_) => {
                self.failed(what, "timeout");
                None
            }
        }
    }

    /// The entry under `key` and the current versions of `tags`, in one round trip.
    pub(crate) async fn get(&self, key: u128, tags: &[Tag]) -> Option<Found> {
        // One round trip, two commands: the entry, and every tag's version and LSN.
        let mut p = redis::pipe();
        p.cmd("GET").arg(self.entry_key(key));
        let mut mget = redis::cmd("MGET");
        for t in tags {
            mget.arg(format!("{}:tv:{t}", self.prefix));
            mget.arg(format!("{}:tl:{t}", self.prefix));
        }
        p.add_command(mget);
        let (entry, nums): (Option<Vec<u8>>, Vec<Option<u64>>) = self.call("get", &p).await?;
        if nums.len() != 2 * tags.len() {
            return None;
        }
        let versions = nums
            .chunks(2)
            .map(|c| (c[0].unwrap_or(0), c[1].unwrap_or(0)))
            .collect();
        Some(Found { entry, versions })
    }

    /// Stores an entry in the background: a request never waits for it.
    pub(crate) fn put(
        self: &Arc<Self>,
        key: u128,
        tags: &[Tag],
        versions: &[u64],
        fresh: Lsn,
        ttl: Duration,
        payload: Vec<u8>,
    ) {
        debug_assert_eq!(tags.len(), versions.len());
        if !self.allowed() {
            return;
        }
        let env = Envelope {
            fresh_lsn: fresh.0,
            versions: versions.to_vec(),
            payload: &payload,
        };
        let Ok(bytes) = postcard::to_allocvec(&env) else {
            return;
        };
        let mut p = redis::pipe();
        p.cmd("SET")
            .arg(self.entry_key(key))
            .arg(bytes)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .ignore();
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let _: Option<()> = this.call("set", &p).await;
        });
    }

    /// INCRs the versions of `tags`, records `lsn`, and announces them. The
    /// new versions, or `None` when Redis did not take them.
    pub(crate) async fn invalidate(&self, tags: &[String], lsn: Lsn) -> Option<Vec<u64>> {
        let mut p = redis::pipe();
        for t in tags {
            p.cmd("INCR").arg(format!("{}:tv:{t}", self.prefix));
        }
        for t in tags {
            p.cmd("SET")
                .arg(format!("{}:tl:{t}", self.prefix))
                .arg(lsn.0)
                .ignore();
        }
        let versions: Vec<u64> = self.call("invalidate", &p).await?;
        let mut msg = format!("{:x}\n", self.instance);
        for (t, v) in tags.iter().zip(&versions) {
            msg.push_str(&format!("{v} {} {t}\n", lsn.0));
        }
        let mut publish = redis::pipe();
        publish.cmd("PUBLISH").arg(&self.channel).arg(msg).ignore();
        let _: Option<()> = self.call("publish", &publish).await;
        Some(versions)
    }
}

/// Parses a channel message: `(instance, [(table, version, lsn)])`.
/// `(table, version, lsn)` announced on the channel.
type Update = (String, u64, u64);

fn parse_message(payload: &str) -> Option<(u64, Vec<Update>)> {
    let mut lines = payload.lines();
    let instance = u64::from_str_radix(lines.next()?, 16).ok()?;
    let mut out = Vec::new();
    for line in lines {
        let mut parts = line.splitn(3, ' ');
        let v = parts.next()?.parse().ok()?;
        let lsn = parts.next()?.parse().ok()?;
        let t = parts.next()?.to_owned();
        out.push((t, v, lsn));
    }
    Some((instance, out))
}

/// Subscribes to the invalidation channel for as long as the cache lives;
/// empties L1 whenever the subscription is lost (messages may be lost with it).
pub(crate) fn spawn_bus(l2: Arc<L2>, cache: Weak<QueryCache>) {
    tokio::spawn(async move {
        loop {
            if cache.strong_count() == 0 {
                return;
            }
            let sub = tokio::time::timeout(l2.timeout * 10, async {
                let mut ps = l2.client.get_async_pubsub().await?;
                ps.subscribe(&l2.channel).await?;
                Ok::<_, redis::RedisError>(ps)
            })
            .await;
            if let Ok(Ok(ps)) = sub {
                if let Some(c) = cache.upgrade() {
                    c.clear_l1();
                    c.set_bus_up(true);
                    c.replay_pending().await;
                }
                tracing::info!("subscribed to cache invalidations");
                let mut stream = ps.into_on_message();
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tokio::select! {
                        msg = stream.next() => {
                            let Some(msg) = msg else { break };
                            let Some(c) = cache.upgrade() else { return };
                            let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) else { continue };
                            if let Some((from, updates)) = parse_message(text)
                                && from != l2.instance
                            {
                                c.apply_remote(&updates);
                            }
                        }
                        _ = tick.tick() => {
                            let Some(c) = cache.upgrade() else { return };
                            c.replay_pending().await;
                        }
                    }
                }
                tracing::warn!(
                    "cache invalidation channel lost: L1 emptied, short TTL until it is back"
                );
            }
            if let Some(c) = cache.upgrade() {
                c.set_bus_up(false);
                c.clear_l1();
            }
            tokio::time::sleep(l2.backoff.min(Duration::from_millis(500))).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let (i, u) = parse_message("ff\n3 100 stories\n4 100 follows\n").expect("parse");
        assert_eq!(i, 255);
        assert_eq!(
            u,
            vec![("stories".into(), 3, 100), ("follows".into(), 4, 100)]
        );
        assert!(parse_message("zz\n").is_none());
        assert!(parse_message("1\nx y z\n").is_none());
    }

    #[test]
    fn entries_round_trip_and_keep_their_wire_format() {
        let payload = postcard::to_allocvec(&vec![1i64, 2, 3]).expect("encode");
        let env = Envelope {
            fresh_lsn: 42,
            versions: vec![7, 9],
            payload: &payload,
        };
        let bytes = postcard::to_allocvec(&env).expect("encode");
        // the format of earlier builds: the payload as a sequence of u8
        #[derive(Serialize)]
        struct Before {
            fresh_lsn: u64,
            versions: Vec<u64>,
            payload: Vec<u8>,
        }
        let before = Before {
            fresh_lsn: 42,
            versions: vec![7, 9],
            payload: payload.clone(),
        };
        assert_eq!(bytes, postcard::to_allocvec(&before).expect("encode"));
        let d = decode_entry::<Vec<i64>>(&bytes).expect("decode");
        assert_eq!(
            (d.value, d.fresh_lsn, d.versions),
            (vec![1, 2, 3], 42, vec![7, 9])
        );
    }

    #[test]
    fn garbage_does_not_decode() {
        for bytes in [&b""[..], b"garbage", &[0xff; 40]] {
            assert!(decode_entry::<Vec<i64>>(bytes).is_none());
        }
    }
}
