//! The circuit breaker in front of Redis: after errors in a row, Redis is
//! skipped for a back-off; when it ends, one call at a time probes it (the
//! half-open state) while every other call keeps skipping, so a Redis that is
//! still down costs one timeout per back-off, not one per request.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::time::Instant;

/// Errors in a row that open the circuit.
pub(crate) const OPEN_AFTER: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is under way.
    HalfOpen,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    backoff: Duration,
    errors: AtomicU64,
}

/// Leave to make one call; say how it went. Dropped without a verdict (the
/// caller was cancelled), it counts as a failure of a probe and as nothing
/// otherwise.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    done: bool,
}

impl Permit<'_> {
    /// The call succeeded: the circuit closes.
    pub(crate) fn succeeded(mut self) {
        self.done = true;
        if let Ok(mut s) = self.breaker.state.lock() {
            if !matches!(*s, State::Closed { failures: 0 }) {
                tracing::info!("redis answers again");
            }
            *s = State::Closed { failures: 0 };
        }
    }

    /// The call failed (an error or a timeout).
    pub(crate) fn failed(mut self, what: &str, err: &str) {
        self.done = true;
        self.breaker.failure(self.probe, what, err);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && self.probe {
            // a cancelled probe: let the next caller probe
            if let Ok(mut s) = self.breaker.state.lock()
                && *s == State::HalfOpen
            {
                *s = State::Open {
                    until: Instant::now(),
                };
            }
        }
    }
}

impl Breaker {
    pub(crate) fn new(backoff: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            backoff,
            errors: AtomicU64::new(0),
        }
    }

    /// A permit for one call, or `None`: skip Redis.
    pub(crate) fn allow(&self) -> Option<Permit<'_>> {
        let mut s = self.state.lock().ok()?;
        let probe = match *s {
            State::Closed { .. } => false,
            State::HalfOpen => return None,
            State::Open { until } if Instant::now() < until => return None,
            State::Open { .. } => {
                *s = State::HalfOpen;
                true
            }
        };
        Some(Permit {
            breaker: self,
            probe,
            done: false,
        })
    }

    fn failure(&self, probe: bool, what: &str, err: &str) {
        self.errors.fetch_add(1, Relaxed);
        crate::stats::metric("seaway_cache_l2_errors_total", 1);
        let Ok(mut s) = self.state.lock() else { return };
        let open = match *s {
            State::Closed { failures } if !probe => {
                let n = failures + 1;
                *s = State::Closed { failures: n };
                n >= OPEN_AFTER
            }
            _ => true,
        };
        if open {
            if matches!(*s, State::Closed { .. }) {
                tracing::warn!(
                    error = err,
                    op = what,
                    "redis failing: skipping it for {:?}",
                    self.backoff
                );
            }
            *s = State::Open {
                until: Instant::now() + self.backoff,
            };
        }
    }

    /// Whether the last calls succeeded (closed, no failure since).
    pub(crate) fn healthy(&self) -> bool {
        self.state
            .lock()
            .is_ok_and(|s| *s == State::Closed { failures: 0 })
    }

    /// Calls that failed or timed out, ever.
    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_errors_and_lets_one_probe_through_after_the_backoff() {
        let b = Breaker::new(Duration::from_secs(1));
        for _ in 0..OPEN_AFTER {
            b.allow().expect("closed").failed("get", "boom");
        }
        assert!(b.allow().is_none(), "open: skipped");
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(b.allow().is_none(), "still backing off");
        tokio::time::advance(Duration::from_millis(1)).await;
        let probe = b.allow().expect("one probe");
        for _ in 0..10 {
            assert!(
                b.allow().is_none(),
                "the others keep skipping while it probes"
            );
        }
        probe.failed("get", "still down");
        assert!(b.allow().is_none(), "a failed probe opens again");
        tokio::time::advance(Duration::from_secs(1)).await;
        b.allow().expect("probe").succeeded();
        assert!(b.healthy());
        assert!(
            b.allow().is_some() && b.allow().is_some(),
            "closed: everyone calls"
        );
        assert_eq!(b.errors(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_lets_the_next_caller_probe() {
        let b = Breaker::new(Duration::from_secs(1));
        for _ in 0..OPEN_AFTER {
            b.allow().expect("closed").failed("get", "boom");
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(b.allow().expect("probe"));
        assert!(b.allow().is_some(), "the next one probes");
    }
}
