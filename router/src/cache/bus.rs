//! The invalidation channel and the cache's background loops.
//!
//! * **The bus.** One subscription per instance. At every (re)connection the
//!   epoch is checked (a new one drops everything) and L1 is emptied (what
//!   was announced while it was down is unknown). While subscribed, the
//!   instance publishes a heartbeat every [`HEARTBEAT`] and must receive its
//!   own within [`HEARTBEAT_DEADLINE`]. Each heartbeat also makes sure of
//!   the epoch on the versions' master, so a failover (a new master, a new
//!   run id) brings every instance a new epoch within a heartbeat, even when
//!   no subscription broke. A paused or stopped Redis, a
//!   half-open connection, or a `PUBLISH` refused by an ACL all end in
//!   silence, and silence counts as loss. While the bus is lost, L1 entries
//!   live at most [`SHORT_TTL`](super::SHORT_TTL) and L2 is not used.
//! * **Resending.** Invalidations Redis did not take are resent every
//!   [`RESEND`] (and at once when one fails), by a loop of their own.
//! * **Forgetting.** Idle row versions are deleted from Redis, and idle tags
//!   forgotten here, once no entry can depend on them.

use super::QueryCache;
use super::l2::{L2, Message, parse};
use futures::StreamExt;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How often an instance publishes its heartbeat.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(250);
/// How long the bus may stay silent before it counts as lost.
pub(crate) const HEARTBEAT_DEADLINE: Duration = Duration::from_millis(1000);
/// How often pending invalidations are resent.
pub(crate) const RESEND: Duration = Duration::from_millis(250);
/// How long a tag may stay idle before it is forgotten: longer than any
/// entry lives.
pub(crate) const IDLE: Duration = Duration::from_secs(super::MAX_TTL.as_secs() + 600);

/// Starts the loops; they hold the cache weakly and end with it.
pub(crate) fn spawn(
    l2: Arc<L2>,
    cache: Weak<QueryCache>,
    wake: Arc<tokio::sync::Notify>,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(subscribe(l2.clone(), cache.clone())),
        tokio::spawn(resend(cache.clone(), wake)),
        tokio::spawn(forget(l2, cache)),
    ]
}

async fn subscribe(l2: Arc<L2>, cache: Weak<QueryCache>) {
    // a cluster's nodes in turn: the next one after a node fails
    let mut node = 0usize;
    loop {
        if cache.strong_count() == 0 {
            return;
        }
        let client = &l2.bus_clients[node % l2.bus_clients.len()];
        node += 1;
        let sub = tokio::time::timeout(l2.timeout * 10, async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&l2.keys.channel).await?;
            Ok::<_, redis::RedisError>(ps)
        })
        .await;
        if let Ok(Ok(ps)) = sub
            && let Some(epoch) = l2.ensure_epoch().await
        {
            if let Some(c) = cache.upgrade() {
                c.adopt_epoch(&epoch);
                c.clear_l1();
                c.set_bus_up(true);
                c.resend.notify_one();
            }
            tracing::info!("subscribed to cache invalidations");
            listen(&l2, &cache, ps).await;
            tracing::warn!(
                "cache invalidation channel lost: L1 emptied, short TTL until it is back"
            );
        }
        if let Some(c) = cache.upgrade() {
            c.set_bus_up(false);
            c.forget_epoch();
            c.clear_l1();
        } else {
            return;
        }
        tokio::time::sleep(l2.backoff.min(Duration::from_millis(250))).await;
    }
}

/// Reads the channel until it goes silent or breaks.
async fn listen(l2: &L2, cache: &Weak<QueryCache>, ps: redis::aio::PubSub) {
    let mut stream = ps.into_on_message();
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0u64;
    // the oldest heartbeat not heard back yet
    let mut waiting: Option<(u64, Instant)> = None;
    let mut failed_publishes = 0;
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return };
                let Some(c) = cache.upgrade() else { return };
                let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) else { continue };
                match parse(text) {
                    Some(Message::Heartbeat { instance, n }) if instance == l2.instance => {
                        if waiting.is_some_and(|(w, _)| n >= w) {
                            waiting = None;
                        }
                    }
                    Some(Message::Heartbeat { .. }) | None => {}
                    Some(Message::Invalidation { epoch, lsn, version, tags, .. }) => {
                        if c.epoch().is_some_and(|e| e.text == epoch) {
                            c.catchup.want(crate::lsn::Lsn(lsn));
                            c.versions.apply(tags.into_iter().map(|t| (t, version, lsn)));
                            c.versions.heard(version);
                        } else if let Some(now) = l2.ensure_epoch().await {
                            // another instance saw a new epoch first
                            c.adopt_epoch(&now);
                        }
                    }
                }
            }
            _ = beat.tick() => {
                if waiting.is_some_and(|(_, at)| at.elapsed() > HEARTBEAT_DEADLINE) {
                    return;
                }
                if waiting.is_none() {
                    sent += 1;
                    if let Some(epoch) = l2.heartbeat(sent).await {
                        failed_publishes = 0;
                        waiting = Some((sent, Instant::now()));
                        // a new master (a failover, a restart) made a new one
                        if let Some(c) = cache.upgrade()
                            && c.epoch().is_none_or(|e| e.text != epoch)
                        {
                            c.adopt_epoch(&epoch);
                        }
                    } else {
                        failed_publishes += 1;
                        if failed_publishes >= 2 {
                            return;
                        }
                    }
                }
            }
        }
    }
}

async fn resend(cache: Weak<QueryCache>, wake: Arc<tokio::sync::Notify>) {
    loop {
        {
            let Some(c) = cache.upgrade() else { return };
            if c.bus_up() {
                let _ = c.resend_pending().await;
            }
        }
        // wait without holding the cache, so dropping the last Db drops it
        let _ = tokio::time::timeout(RESEND, wake.notified()).await;
    }
}

async fn forget(l2: Arc<L2>, cache: Weak<QueryCache>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(c) = cache.upgrade() else { return };
        c.versions.forget_idle(IDLE);
        drop(c);
        l2.sweep(IDLE).await;
    }
}
