//! `timeout`: drops all data, and closes the connection once the direction has been idle for `timeout` ms
//! (every chunk re-arms the timer, as in Toxiproxy); `0` never closes. Removing an active timeout toxic closes
//! the connection, because the data it dropped left the stream incoherent.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use tokio::time::Instant;

use super::{Behaviour, Close, Item, Step, Timeout, ToxicKind, millis};

pub(crate) struct TimeoutStage {
    attrs: Timeout,
    /// Start of the current idle period: when the toxic started or the last chunk was dropped.
    idle_since: Instant,
}

impl TimeoutStage {
    pub fn new(attrs: Timeout, now: Instant) -> Self {
        TimeoutStage { attrs, idle_since: now }
    }

    fn deadline(&self) -> Option<Instant> {
        (self.attrs.timeout > 0).then(|| self.idle_since + millis(self.attrs.timeout))
    }
}

impl Behaviour for TimeoutStage {
    fn poll(&mut self, queue: &mut VecDeque<Item>, now: Instant, _rng: &mut StdRng) -> Step {
        while let Some(Item::Data(_)) = queue.front() {
            queue.pop_front();
            self.idle_since = now;
        }
        if let Some(Item::Eof) = queue.front() {
            return queue.pop_front().map_or(Step::Idle, Step::Emit);
        }
        match self.deadline() {
            Some(d) if now >= d => Step::Emit(Item::Eof),
            Some(d) => Step::Wait(d),
            None => Step::Idle,
        }
    }

    fn poll_blocked(&mut self, now: Instant) -> Step {
        match self.deadline() {
            Some(d) if now >= d => Step::Close(Close::Hard),
            Some(d) => Step::Wait(d),
            None => Step::Idle,
        }
    }

    fn update(&mut self, kind: &ToxicKind) -> bool {
        let ToxicKind::Timeout(attrs) = kind else { return false };
        self.attrs = attrs.clone();
        true
    }

    fn on_remove(&self) -> Option<Close> {
        Some(Close::Hard)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use std::time::Duration;

    #[test]
    fn drops_data_and_closes_after_idle_timeout() {
        let t0 = Instant::now();
        let mut s = TimeoutStage::new(Timeout { timeout: 100 }, t0);
        let mut q: VecDeque<Item> = [data("a", t0)].into();
        let mut rng = rng();
        let later = t0 + Duration::from_millis(50);
        assert_eq!(s.poll(&mut q, later, &mut rng), Step::Wait(later + Duration::from_millis(100)));
        assert!(q.is_empty());
        // Each chunk re-arms the timer: steady traffic never times out.
        q.push_back(data("b", t0));
        let later2 = t0 + Duration::from_millis(120);
        assert_eq!(s.poll(&mut q, later2, &mut rng), Step::Wait(later2 + Duration::from_millis(100)));
        assert_eq!(s.poll(&mut q, later2 + Duration::from_millis(100), &mut rng), Step::Emit(Item::Eof));
    }

    #[test]
    fn zero_never_closes() {
        let t0 = Instant::now();
        let mut s = TimeoutStage::new(Timeout { timeout: 0 }, t0);
        let mut q: VecDeque<Item> = [data("a", t0)].into();
        assert_eq!(s.poll(&mut q, t0 + Duration::from_secs(3600), &mut rng()), Step::Idle);
        assert!(q.is_empty());
        assert_eq!(s.on_remove(), Some(Close::Hard));
    }
}
