//! [`StoreHandle`]: the one boundary between async code and the blocking [`Store`]. Every call runs on
//! tokio's blocking pool (`spawn_blocking`), one at a time and in the order it was made, so SQLite never
//! blocks an async worker.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::{Store, StoreError, StoreResult};

/// One call queued for the store.
type Job = Box<dyn FnOnce(&dyn Store) + Send>;

/// A handle on the store for async code. Cheap to clone.
///
/// Calls run one at a time in the order they were made, from any thread: a write made with [`Self::submit`]
/// (not waited for) is seen by every call made after it. The store serialises its transactions anyway (one
/// connection), so running them in one line costs no throughput. They run in a `spawn_blocking` task (not a
/// thread of our own) so that tokio's paused clock does not jump ahead while one is under way.
#[derive(Clone)]
pub struct StoreHandle {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn Store>,
    queue: Mutex<Queue>,
}

/// The calls waiting, and whether a blocking task is draining them (at most one is).
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    draining: bool,
}

impl StoreHandle {
    /// A handle on `store`.
    pub fn new(store: Arc<dyn Store>) -> StoreHandle {
        StoreHandle { shared: Arc::new(Shared { store, queue: Mutex::new(Queue::default()) }) }
    }

    /// Runs `call` off the async workers and waits for its answer.
    pub async fn call<T, F>(&self, call: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.push(Box::new(move |store| {
            // The caller may have stopped waiting (its task was cancelled): nothing to tell then.
            let _ = tx.send(call(store));
        }));
        rx.await.map_err(|_| StoreError::Backend("the store call panicked or its task stopped".into()))?
    }

    /// Queues a write without waiting for it (from sync code too); a failure is logged, naming `what`. Later
    /// calls see it: calls run in order.
    pub fn submit<F>(&self, what: &'static str, call: F)
    where
        F: FnOnce(&dyn Store) -> StoreResult<()> + Send + 'static,
    {
        self.push(Box::new(move |store| {
            if let Err(e) = call(store) {
                tracing::error!(error = %e, what, "a store write failed");
            }
        }));
    }

    fn push(&self, job: Job) {
        {
            let mut queue = self.shared.lock();
            queue.jobs.push_back(job);
            if queue.draining {
                return;
            }
            queue.draining = true;
        }
        let shared = self.shared.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || shared.drain());
            }
            // Outside a runtime (a sync caller at startup) blocking here is what the caller does anyway.
            Err(_) => shared.drain(),
        }
    }
}

impl Shared {
    /// Every holder of the lock leaves the queue whole (whole jobs pushed and popped).
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the queued calls until none is left.
    fn drain(&self) {
        loop {
            let job = {
                let mut queue = self.lock();
                match queue.jobs.pop_front() {
                    Some(job) => job,
                    None => {
                        queue.draining = false;
                        return;
                    }
                }
            };
            // A panicking store must not leave the queue marked as drained by a task that is gone.
            let store = &*self.store;
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(store))).is_err() {
                tracing::error!("a store call panicked; its caller gets an error");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::{NewAudit, SqliteStore};

    fn handle() -> StoreHandle {
        StoreHandle::new(Arc::new(SqliteStore::in_memory().unwrap()))
    }

    /// On a current-thread runtime, a store call that takes 1 s must not stop a 10 ms timer of another task
    /// (run on the runtime's only thread, it would).
    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_store_call_does_not_stall_the_other_tasks() {
        let store = handle();
        let started = std::time::Instant::now();
        let slow = tokio::spawn(async move {
            store
                .call(|s| {
                    std::thread::sleep(Duration::from_secs(1));
                    s.agents()
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(started.elapsed() < Duration::from_millis(500), "a 10 ms sleep took {:?}", started.elapsed());
        assert!(!slow.is_finished());
        assert_eq!(slow.await.unwrap().unwrap(), []);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn writes_not_waited_for_are_seen_by_every_later_call_in_order() {
        let store = handle();
        for n in 1..=50 {
            let entry = NewAudit { actor: "test".into(), action: format!("a{n}"), ..NewAudit::default() };
            store.submit("an audit entry", move |s| s.append_audit(&entry).map(|_| ()));
        }
        let audit = store.call(|s| s.audit(100, None)).await.unwrap();
        let actions: Vec<String> = audit.into_iter().rev().map(|a| a.entry.action).collect();
        assert_eq!(actions, (1..=50).map(|n| format!("a{n}")).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_call_is_an_error_and_the_calls_after_it_still_run() {
        let store = handle();
        let panicked = store.call(|_| -> StoreResult<()> { panic!("a broken store") }).await;
        assert!(matches!(panicked, Err(StoreError::Backend(_))), "{panicked:?}");
        assert_eq!(store.call(|s| s.agents()).await.unwrap(), []);
    }
}
