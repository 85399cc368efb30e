//! Counters for `/stats` and `/metrics`, and the snapshots that show them.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Routing counters. Also emitted through the `metrics` crate.
#[derive(Debug, Default)]
pub(crate) struct RouteCounters {
    pub(crate) primary_reads: AtomicU64,
    pub(crate) replica_reads: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) sticky_reads: AtomicU64,
    pub(crate) fallbacks: AtomicU64,
}

impl RouteCounters {
    pub(crate) fn snapshot(&self) -> RoutingStats {
        RoutingStats {
            primary_reads: self.primary_reads.load(Relaxed),
            replica_reads: self.replica_reads.load(Relaxed),
            writes: self.writes.load(Relaxed),
            sticky_reads: self.sticky_reads.load(Relaxed),
            fallbacks: self.fallbacks.load(Relaxed),
        }
    }
}

pub(crate) fn bump(counter: &AtomicU64, name: &'static str) {
    counter.fetch_add(1, Relaxed);
    metric(name, 1);
}

/// Adds `n` to the `metrics` counter `name` (nothing without the feature).
#[inline]
pub(crate) fn metric(name: &'static str, n: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!(name).increment(n);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, n);
}

/// As [`metric`], with one label.
#[inline]
pub(crate) fn metric_labeled(name: &'static str, label: &'static str, value: &'static str, n: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!(name, label => value).increment(n);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, label, value, n);
}

/// Routing counters at one moment.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
pub struct RoutingStats {
    /// Reads served by the primary.
    pub primary_reads: u64,
    /// Reads served by a replica.
    pub replica_reads: u64,
    /// Writes (always the primary, or a router's write alias).
    pub writes: u64,
    /// Reads sent to the primary because their scope had written (a read
    /// answered by the cache is not counted).
    pub sticky_reads: u64,
    /// Reads that wanted a replica and ran on the primary (none usable, or it
    /// failed); a read answered by the cache is not counted.
    pub fallbacks: u64,
}

/// One pool's occupancy.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PoolStats {
    /// The alias or replica name (absent for the primary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Open connections.
    pub size: u32,
    /// Idle connections.
    pub idle: u32,
}

/// All pools.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PoolsStats {
    /// The primary's pool.
    pub primary: PoolStats,
    /// Each replica's pool.
    pub replicas: Vec<PoolStats>,
}

/// A replica's health at one moment.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReplicaHealth {
    /// Its name (`replica1`, ...), never its URL.
    pub name: String,
    /// Serving reads.
    pub healthy: bool,
    /// Time behind the primary; 0 when it has replayed everything.
    pub lag_ms: u64,
    /// WAL bytes behind the primary.
    pub lag_bytes: u64,
    /// Probe failures in a row.
    pub consecutive_failures: u32,
}
