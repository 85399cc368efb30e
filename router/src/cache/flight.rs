//! Single-flight loads: one database load per key and target at a time;
//! concurrent misses wait for it, with a deadline.
//!
//! # Bounded waiting
//!
//! * A waiter joins only a load for the same target (primary, replicas, an
//!   alias) that needs at least its freshness; otherwise it runs its own.
//! * A waiter waits at most its deadline, then loads on its own.
//! * A failed load fails all its waiters at once (with its error).
//! * A load whose initiator is cancelled removes its entry and wakes its
//!   waiters, who then load themselves (`a_cancelled_load_leaves_no_entry`).

use crate::lsn::Lsn;
use sea_orm::{DbErr, RuntimeErr};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// A load's result as its waiters see it: the error is copied (a `DbErr` is
/// not `Clone`), keeping whether it was a connection error.
pub(crate) type Shared<T> = Result<T, SharedErr>;

/// An error of a load, copied for its waiters.
#[derive(Clone, Debug)]
pub(crate) struct SharedErr {
    message: String,
    connection: bool,
}

impl SharedErr {
    pub(crate) fn of(e: &DbErr) -> Self {
        Self {
            message: e.to_string(),
            connection: crate::conn::is_connection_error(e),
        }
    }

    /// The error again, as the waiter's own.
    pub(crate) fn to_err(&self) -> DbErr {
        if self.connection {
            DbErr::Conn(RuntimeErr::Internal(self.message.clone()))
        } else {
            DbErr::Custom(self.message.clone())
        }
    }
}

type Slot<T> = watch::Receiver<Option<Shared<T>>>;

struct Flight<T> {
    min_lsn: Lsn,
    id: u64,
    rx: Slot<T>,
}

/// The loads in flight.
pub(crate) struct Flights<T> {
    map: Mutex<HashMap<(u128, u8), Flight<T>>>,
    next: std::sync::atomic::AtomicU64,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }
}

/// What a caller is to do.
pub(crate) enum Role<'a, T> {
    /// Load, then [`Lead::finish`].
    Lead(Lead<'a, T>),
    /// Wait for another's load.
    Wait(Slot<T>),
    /// Load without coalescing (another load needs less freshness).
    Alone,
}

/// The initiator's handle: dropped without `finish` (cancelled), it removes
/// its entry and its waiters load themselves.
pub(crate) struct Lead<'a, T> {
    flights: &'a Flights<T>,
    key: (u128, u8),
    id: u64,
    tx: Option<watch::Sender<Option<Shared<T>>>>,
}

impl<T: Clone> Lead<'_, T> {
    /// Hands the result to every waiter.
    pub(crate) fn finish(mut self, result: Shared<T>) {
        self.remove();
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(result));
        }
    }
}

impl<T> Lead<'_, T> {
    fn remove(&self) {
        if let Ok(mut m) = self.flights.map.lock()
            && m.get(&self.key).is_some_and(|f| f.id == self.id)
        {
            m.remove(&self.key);
        }
    }
}

impl<T> Drop for Lead<'_, T> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            // cancelled: the sender goes with it, which wakes the waiters
            self.remove();
        }
    }
}

/// How a wait ended.
pub(crate) enum Waited<T> {
    Done(Shared<T>),
    /// The initiator was cancelled, or the deadline passed: load yourself.
    Abandoned,
}

impl<T: Clone> Flights<T> {
    /// Joins or starts the load of `key` for `target` needing `min_lsn`.
    pub(crate) fn join(&self, key: u128, target: u8, min_lsn: Lsn) -> Role<'_, T> {
        let Ok(mut m) = self.map.lock() else {
            return Role::Alone;
        };
        let k = (key, target);
        if let Some(f) = m.get(&k) {
            return if f.min_lsn >= min_lsn {
                Role::Wait(f.rx.clone())
            } else {
                Role::Alone
            };
        }
        let (tx, rx) = watch::channel(None);
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        m.insert(k, Flight { min_lsn, id, rx });
        Role::Lead(Lead {
            flights: self,
            key: k,
            id,
            tx: Some(tx),
        })
    }

    /// Waits for a load, at most `deadline`.
    pub(crate) async fn wait(mut rx: Slot<T>, deadline: Duration) -> Waited<T> {
        match tokio::time::timeout(deadline, rx.wait_for(Option::is_some)).await {
            Ok(Ok(v)) => match v.as_ref() {
                Some(r) => Waited::Done(r.clone()),
                None => Waited::Abandoned,
            },
            _ => Waited::Abandoned,
        }
    }

    /// Loads in flight (a test can count leaks).
    pub(crate) fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waiters_share_the_result_or_the_error() {
        let f: Flights<i32> = Flights::default();
        let Role::Lead(lead) = f.join(1, 0, Lsn::ZERO) else {
            panic!("lead")
        };
        let Role::Wait(rx) = f.join(1, 0, Lsn::ZERO) else {
            panic!("wait")
        };
        let waiter = tokio::spawn(Flights::wait(rx, Duration::from_secs(5)));
        lead.finish(Err(SharedErr::of(&DbErr::Conn(RuntimeErr::Internal(
            "down".into(),
        )))));
        match waiter.await.expect("join") {
            Waited::Done(Err(e)) => assert!(crate::conn::is_connection_error(&e.to_err())),
            _ => panic!("the waiter gets the error at once"),
        }
        assert_eq!(f.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn another_target_or_more_freshness_loads_alone() {
        let f: Flights<i32> = Flights::default();
        let _lead = f.join(1, 0, Lsn(10));
        assert!(
            matches!(f.join(1, 1, Lsn(10)), Role::Lead(_)),
            "another target"
        );
        assert!(matches!(f.join(1, 0, Lsn(11)), Role::Alone), "needs more");
        assert!(matches!(f.join(1, 0, Lsn(9)), Role::Wait(_)), "needs less");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_load_leaves_no_entry() {
        let f: Flights<i32> = Flights::default();
        let lead = f.join(1, 0, Lsn::ZERO);
        let Role::Wait(rx) = f.join(1, 0, Lsn::ZERO) else {
            panic!("wait")
        };
        drop(lead);
        assert_eq!(f.len(), 0);
        assert!(matches!(
            Flights::wait(rx, Duration::from_secs(5)).await,
            Waited::Abandoned
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_at_its_deadline() {
        let f: Flights<i32> = Flights::default();
        let _lead = f.join(1, 0, Lsn::ZERO);
        let Role::Wait(rx) = f.join(1, 0, Lsn::ZERO) else {
            panic!("wait")
        };
        let t = tokio::time::Instant::now();
        assert!(matches!(
            Flights::wait(rx, Duration::from_secs(2)).await,
            Waited::Abandoned
        ));
        assert_eq!(t.elapsed(), Duration::from_secs(2));
    }
}
