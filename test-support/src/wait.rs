//! Waiting on conditions with deadlines instead of sleeping: blocking for threads and child processes, async on
//! tokio time (so a test on a paused clock advances it by polling).

use std::future::Future;
use std::time::{Duration, Instant};

/// How often the blocking waits poll.
const POLL: Duration = Duration::from_millis(5);

/// Polls `cond` until it holds; panics naming `what` once `within` has passed.
pub fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    if !poll_until(within, &mut cond) {
        panic!("timed out after {within:?} waiting for {what}");
    }
}

/// Polls `cond` until it holds or `within` passes; returns whether it held (checked once more at the end).
pub fn poll_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(POLL);
    }
    cond()
}

/// Polls `check` (what is still left, as text) until it reports nothing, for at most `bound` after `since`,
/// failing the test with what is left after that; returns how long it took. `what` names what was killed.
pub fn clean_within(
    since: Instant,
    bound: Duration,
    what: &str,
    check: impl Fn() -> Vec<String>,
) -> Duration {
    let mut left = check();
    while !left.is_empty() && since.elapsed() < bound {
        std::thread::sleep(POLL);
        left = check();
    }
    assert!(left.is_empty(), "{:?} after SIGKILL of {what}, still left: {left:?}", since.elapsed());
    since.elapsed()
}

/// Polls `cond` every `every` of tokio time until it holds; panics naming `what` once `within` has passed.
pub async fn wait_until_async(
    what: &str,
    within: Duration,
    every: Duration,
    mut cond: impl AsyncFnMut() -> bool,
) {
    let end = tokio::time::Instant::now() + within;
    while !cond().await {
        assert!(tokio::time::Instant::now() < end, "timed out after {within:?} waiting until {what}");
        tokio::time::sleep(every).await;
    }
}

/// Polls `cond` every 5 ms of tokio time until it holds or `within` passes; returns whether it held. Yields to
/// the runtime between polls, so the tasks being waited for (leases, renewals) run.
pub async fn poll_until_async(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    cond()
}

/// Polls `probe` every 20 ms of tokio time until it gives `Some`; panics naming `what` once `within` has passed.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < end, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `cond` every 10 ms of tokio time for `window`; panics naming `what` the first time it does not hold.
pub async fn holds_for(what: &str, window: Duration, mut cond: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < end {
        assert!(cond(), "{what} stopped holding");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_that_never_holds_fails_naming_it() {
        let failed =
            std::panic::catch_unwind(|| wait_until("the impossible", Duration::from_millis(20), || false));
        let message = failed.expect_err("a wait that never ends fails");
        let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("waiting for the impossible"), "{message}");
    }

    #[test]
    fn a_condition_that_comes_true_ends_the_wait() {
        let mut polls = 0;
        wait_until("the third poll", Duration::from_secs(5), || {
            polls += 1;
            polls == 3
        });
        assert_eq!(polls, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn async_waits_run_on_paused_time() {
        let start = tokio::time::Instant::now();
        let held =
            poll_until_async(Duration::from_secs(60), || start.elapsed() >= Duration::from_secs(30)).await;
        assert!(held);
        let value = wait_for("a minute", Duration::from_secs(120), || async {
            (start.elapsed() >= Duration::from_secs(60)).then_some(7)
        })
        .await;
        assert_eq!(value, 7);
    }
}
