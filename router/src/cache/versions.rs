//! Tag versions as this process knows them, and the generation that lets an
//! L1 hit skip checking them.
//!
//! # Consistency
//!
//! * Redis assigns versions from one counter per namespace and epoch, floored
//!   by its clock in microseconds, so a tag's version only grows, even across
//!   the deletion of an idle row tag and a failover that lost the last
//!   increments (`l2::INVALIDATE`).
//!   Here a tag's Redis version is the largest ever seen ([`Versions::apply`]
//!   takes the maximum): a reply that arrives after a newer message cannot
//!   move it back (`a_stale_reply_never_moves_a_version_back`).
//! * Every change of any tag (a local write, another instance's message, a
//!   newer version in a reply, a higher invalidation LSN) takes a new
//!   *generation*; the tag remembers it. An entry is valid
//!   when none of its tags changed after the generation at which its load
//!   began, and when L1 was not emptied since. An entry that was valid at the
//!   current generation is valid without looking at its tags.
//! * A local write that Redis has not taken yet (it is down) stays *pending*:
//!   no L2 entry that depends on its tags is used or stored here until Redis
//!   has it.
//! * A new epoch (Redis restarted, failed over, or was restored) forgets
//!   every version and empties L1 (`QueryCache::adopt_epoch`).

use crate::tag::{Moved, TagId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
struct TagState {
    /// The largest version Redis gave it (0: none seen).
    version: u64,
    /// The primary's LSN after its last invalidation: a replica behind it
    /// cannot fill an entry that depends on the tag.
    lsn: u64,
    /// The generation of its last change.
    at: u64,
    /// When it last changed, to forget idle tags.
    changed: Instant,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Versions {
    tags: RwLock<HashMap<TagId, TagState>>,
    generation: AtomicU64,
    /// The generation at which L1 was last emptied.
    cleared_at: AtomicU64,
    /// The largest Redis version applied here.
    newest: AtomicU64,
    /// Local writes Redis has not taken: tag -> (is a row tag, LSN, the
    /// generation of the latest such write).
    pending: Mutex<HashMap<TagId, (bool, u64, u64)>>,
}

impl Default for Versions {
    fn default() -> Self {
        Self {
            tags: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(1),
            cleared_at: AtomicU64::new(0),
            newest: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
        }
    }
}

impl Versions {
    /// The current generation: capture it before a load.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// Whether an entry whose load began at `since` and that depends on
    /// `tags` is still valid.
    pub(crate) fn valid_since(&self, tags: &[TagId], since: u64) -> bool {
        if since < self.cleared_at.load(Relaxed) {
            return false;
        }
        let Ok(map) = self.tags.read() else {
            return false;
        };
        tags.iter()
            .all(|t| map.get(t).is_none_or(|s| s.at <= since))
    }

    /// The largest invalidation LSN among `tags`.
    pub(crate) fn max_lsn(&self, tags: &[TagId]) -> u64 {
        let Ok(map) = self.tags.read() else {
            return u64::MAX;
        };
        tags.iter()
            .filter_map(|t| map.get(t).map(|s| s.lsn))
            .max()
            .unwrap_or(0)
    }

    /// The Redis versions of `tags` as known here (0: none), for an L2 entry.
    pub(crate) fn recorded(&self, tags: &[TagId]) -> Vec<u64> {
        let Ok(map) = self.tags.read() else {
            return vec![u64::MAX; tags.len()];
        };
        tags.iter()
            .map(|t| map.get(t).map_or(0, |s| s.version))
            .collect()
    }

    /// A local write moved `tags`: they change now. With `pending`, Redis
    /// has yet to take them. Returns the write's generation.
    pub(crate) fn bump_local(&self, tags: &[Moved], lsn: u64, pending: bool) -> u64 {
        let now = Instant::now();
        let g = self.generation.fetch_add(1, Relaxed) + 1;
        if let Ok(mut map) = self.tags.write() {
            for m in tags {
                let s = map.entry(m.id).or_insert(TagState {
                    version: 0,
                    lsn: 0,
                    at: 0,
                    changed: now,
                });
                s.lsn = s.lsn.max(lsn);
                s.at = g;
                s.changed = now;
            }
        }
        if pending && let Ok(mut p) = self.pending.lock() {
            for m in tags {
                let e = p
                    .entry(m.id)
                    .or_insert((m.level == crate::tag::Level::Row, 0, 0));
                e.1 = e.1.max(lsn);
                e.2 = e.2.max(g);
            }
        }
        g
    }

    /// Versions from Redis (a message, a reply): `(tag, version, lsn)`. A
    /// version below the known one does not move it back; a higher one is a
    /// change, and so is a higher LSN with any version: a write this instance
    /// had not heard of, whose message arrived after a later version (this
    /// instance's own reply), was not in what a replica behind its LSN
    /// loaded since (`a_late_message_that_raises_a_tags_lsn_is_a_change`).
    pub(crate) fn apply(&self, updates: impl IntoIterator<Item = (TagId, u64, u64)>) {
        let now = Instant::now();
        let Ok(mut map) = self.tags.write() else {
            return;
        };
        let mut g = None;
        for (t, v, lsn) in updates {
            let s = map.entry(t).or_insert(TagState {
                version: 0,
                lsn: 0,
                at: 0,
                changed: now,
            });
            let raised = lsn > s.lsn;
            s.lsn = s.lsn.max(lsn);
            if v > s.version || raised {
                s.version = s.version.max(v);
                s.at = *g.get_or_insert_with(|| self.generation.fetch_add(1, Relaxed) + 1);
                s.changed = now;
            }
        }
    }

    /// Whether any of `tags` has a local write Redis has not taken.
    pub(crate) fn any_pending(&self, tags: &[TagId]) -> bool {
        self.pending
            .lock()
            .map(|p| !p.is_empty() && tags.iter().any(|t| p.contains_key(t)))
            .unwrap_or(true)
    }

    /// The pending writes, to send: `(tag, is a row tag, lsn, generation)`.
    pub(crate) fn pending(&self) -> Vec<(TagId, bool, u64, u64)> {
        self.pending
            .lock()
            .map(|p| p.iter().map(|(t, (r, l, g))| (*t, *r, *l, *g)).collect())
            .unwrap_or_default()
    }

    /// A whole invalidation of version `v` was applied (from the bus, or
    /// the reply to this instance's own).
    pub(crate) fn heard(&self, v: u64) {
        self.newest.fetch_max(v, Relaxed);
    }

    /// The newest whole invalidation applied here (messages arrive in
    /// version order, so every earlier one was applied too, while the bus
    /// stayed up).
    pub(crate) fn newest(&self) -> u64 {
        self.newest.load(Relaxed)
    }

    /// Whether any write waits for Redis.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.lock().map(|p| !p.is_empty()).unwrap_or(false)
    }

    /// Redis took the writes of `tags` up to generation `upto`: a later
    /// write of the same tag stays pending until it is sent too.
    pub(crate) fn confirm(&self, tags: &[TagId], upto: u64) {
        if let Ok(mut p) = self.pending.lock() {
            for t in tags {
                if p.get(t).is_some_and(|e| e.2 <= upto) {
                    p.remove(t);
                }
            }
        }
    }

    /// L1 is being emptied: every entry loaded before now is invalid.
    pub(crate) fn clear(&self) {
        let g = self.generation.fetch_add(1, Relaxed) + 1;
        self.cleared_at.store(g, Relaxed);
    }

    /// A new epoch: forget every version (the new epoch counts from the
    /// start again; pending writes stay, to be sent in it), keep every
    /// invalidation's LSN (a replica behind one still cannot fill), and
    /// invalidate every entry.
    pub(crate) fn reset(&self) {
        self.newest.store(0, Relaxed);
        if let Ok(mut map) = self.tags.write() {
            for s in map.values_mut() {
                s.version = 0;
            }
        }
        self.clear();
    }

    /// Forgets tags that have not changed for `idle` (longer than any entry
    /// lives: an entry loaded before such a change is gone).
    pub(crate) fn forget_idle(&self, idle: Duration) {
        if let Ok(mut map) = self.tags.write() {
            map.retain(|_, s| s.changed.elapsed() < idle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::Level;

    fn t(n: u64) -> TagId {
        TagId(n)
    }

    #[test]
    fn an_entry_is_valid_until_one_of_its_tags_changes() {
        let v = Versions::default();
        let since = v.generation();
        assert!(v.valid_since(&[t(1), t(2)], since));
        v.bump_local(&[Moved::new(t(3), Level::Row)], 10, false);
        assert!(v.valid_since(&[t(1), t(2)], since), "another tag");
        v.apply([(t(2), 5, 20)]);
        assert!(!v.valid_since(&[t(1), t(2)], since));
        assert_eq!(v.max_lsn(&[t(1), t(2), t(3)]), 20);
        let later = v.generation();
        assert!(v.valid_since(&[t(1), t(2)], later));
        v.clear();
        assert!(!v.valid_since(&[t(1)], later), "L1 emptied");
    }

    #[test]
    fn a_stale_reply_never_moves_a_version_back() {
        let v = Versions::default();
        v.apply([(t(1), 7, 100)]); // a message: version 7
        let since = v.generation();
        v.apply([(t(1), 6, 90)]); // a pipelined reply read before it
        assert_eq!(v.recorded(&[t(1)]), [7]);
        assert!(
            v.valid_since(&[t(1)], since),
            "an older version is no change"
        );
        v.apply([(t(1), 7, 100)]);
        assert!(
            v.valid_since(&[t(1)], since),
            "the same version is no change"
        );
        v.apply([(t(1), 8, 110)]);
        assert!(!v.valid_since(&[t(1)], since));
    }

    #[test]
    fn a_late_message_that_raises_a_tags_lsn_is_a_change() {
        let v = Versions::default();
        // this instance's write (LSN 100), then Redis's reply: version 6
        v.bump_local(&[Moved::new(t(1), Level::Row)], 100, false);
        v.apply([(t(1), 6, 100)]);
        let since = v.generation();
        // another instance's write of the tag came first in version order
        // (5) but later in the WAL (110): its message arrives now
        v.apply([(t(1), 5, 110)]);
        assert_eq!(v.recorded(&[t(1)]), [6], "the version does not move back");
        assert_eq!(v.max_lsn(&[t(1)]), 110);
        assert!(
            !v.valid_since(&[t(1)], since),
            "an entry loaded before it, from a replica behind 110, stays valid"
        );
    }

    #[test]
    fn pending_writes_are_kept_until_confirmed() {
        let v = Versions::default();
        v.bump_local(
            &[Moved::new(t(1), Level::Row), Moved::new(t(2), Level::Table)],
            5,
            true,
        );
        assert!(v.any_pending(&[t(2), t(9)]));
        let g = v.generation();
        let mut p = v.pending();
        p.sort();
        assert_eq!(p, [(t(1), true, 5, g), (t(2), false, 5, g)]);
        // a second write of tag 2 before the first was confirmed
        v.bump_local(&[Moved::new(t(2), Level::Table)], 6, true);
        v.confirm(&[t(1), t(2)], g);
        assert!(!v.any_pending(&[t(1)]));
        assert!(v.any_pending(&[t(2)]), "the later write is still to send");
        v.confirm(&[t(2)], v.generation());
        assert!(!v.has_pending());
    }

    #[test]
    fn a_reset_invalidates_everything_and_forgets_versions() {
        let v = Versions::default();
        v.apply([(t(1), 7, 100)]);
        let since = v.generation();
        v.reset();
        assert!(!v.valid_since(&[t(2)], since));
        assert_eq!(v.recorded(&[t(1)]), [0]);
        assert_eq!(
            v.max_lsn(&[t(1)]),
            100,
            "an invalidation's LSN outlives the epoch"
        );
        v.apply([(t(1), 1, 100)]);
        assert!(
            !v.valid_since(&[t(1)], v.generation() - 1),
            "the new epoch's first version is a change"
        );
    }
}
