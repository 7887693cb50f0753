//! A cancellation signal for long database operations: the binary trips it on Ctrl-C,
//! and `create db` checks it between steps and rolls back instead of leaving shards
//! running that no configuration records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Cheap to clone; every clone sees the same trip.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    tripped: AtomicBool,
    notify: Notify,
}

impl Cancel {
    /// Asks every operation holding a clone to stop at its next step.
    pub fn trip(&self) {
        self.0.tripped.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_tripped(&self) -> bool {
        self.0.tripped.load(Ordering::SeqCst)
    }

    /// Resolves once tripped (at once if it already is).
    pub async fn tripped(&self) {
        loop {
            // Registered before the check, so a trip in between still wakes it.
            let woken = self.0.notify.notified();
            if self.is_tripped() {
                return;
            }
            woken.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_trip_wakes_a_waiter() {
        let c = Cancel::default();
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.tripped().await }
        });
        assert!(!c.is_tripped());
        c.trip();
        waiter.await.unwrap();
        c.tripped().await;
    }
}
