//! `Lease`: a deadline after which a fault reverts itself, whoever forgot about it.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::AgentError;

/// A tokio task that runs a revert at the deadline unless cancelled first. Renewing moves the deadline.
///
/// Dropping a `Lease` does not cancel it: the deadline still holds. Only [`Lease::cancel`] (called after a
/// successful revert) stops it. The task lives in the tokio runtime, so it protects against a runner that forgets
/// or a step that panics, not against the whole process being killed (that needs the undo journal).
#[derive(Debug)]
pub struct Lease {
    /// Sends new deadlines to the task.
    deadline: watch::Sender<Instant>,
    /// Stops the task once the fault has been reverted by other means.
    task: AbortHandle,
}

// === impl Lease ===

impl Lease {
    /// Arms a lease that calls `revert` once, `ttl` from now. Needs a current tokio runtime.
    pub fn arm<F>(ttl: Duration, revert: F) -> Result<Lease, AgentError>
    where
        F: FnOnce() + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AgentError::NoRuntime)?;
        let (deadline, mut changes) = watch::channel(Instant::now() + ttl);
        let task = runtime.spawn(async move {
            loop {
                let at = *changes.borrow_and_update();
                tokio::select! {
                    () = tokio::time::sleep_until(at) => break,
                    changed = changes.changed() => {
                        if changed.is_err() {
                            // The `Lease` was dropped: its last deadline still stands.
                            tokio::time::sleep_until(at).await;
                            break;
                        }
                    }
                }
            }
            revert();
        });
        Ok(Lease { deadline, task: task.abort_handle() })
    }

    /// When the fault reverts unless renewed or reverted earlier.
    pub fn expires_at(&self) -> Instant {
        *self.deadline.borrow()
    }

    /// Moves the deadline to `ttl` from now (earlier or later).
    pub fn renew(&self, ttl: Duration) {
        self.deadline.send_replace(Instant::now() + ttl);
    }

    /// Stops the deadline task without reverting; for use once the fault has been reverted.
    pub fn cancel(&self) {
        self.task.abort();
    }

    /// Whether the deadline task has finished (expired and reverted) or been cancelled.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn counter() -> (Arc<AtomicUsize>, impl FnOnce() + Send + 'static) {
        let count = Arc::new(AtomicUsize::new(0));
        let inner = count.clone();
        (count, move || {
            inner.fetch_add(1, Ordering::SeqCst);
        })
    }

    #[tokio::test(start_paused = true)]
    async fn expires_once_at_the_deadline() {
        let (count, revert) = counter();
        let lease = Lease::arm(Duration::from_secs(10), revert).unwrap();
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(count.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(lease.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn renew_moves_the_deadline_and_drop_keeps_it() {
        let (count, revert) = counter();
        let lease = Lease::arm(Duration::from_secs(10), revert).unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        lease.renew(Duration::from_secs(10));
        drop(lease);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(count.load(Ordering::SeqCst), 0, "renewed to t=15");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_stops_the_revert() {
        let (count, revert) = counter();
        let lease = Lease::arm(Duration::from_secs(1), revert).unwrap();
        lease.cancel();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn without_a_runtime_arming_is_refused() {
        assert!(matches!(Lease::arm(Duration::from_secs(1), || {}), Err(AgentError::NoRuntime)));
    }
}
