//! `reset_peer`: on the first chunk in its direction, waits `timeout` ms and then resets the connection (TCP RST
//! to both peers, through SO_LINGER 0). The chunk is not forwarded; a direction that never sends is never reset.
//!
//! Deviation from Toxiproxy (#603, documented): Toxiproxy sets SO_LINGER 0 at accept time on every connection
//! made while the toxic exists, whatever its toxicity, so even unselected connections close with RST. Here the
//! linger is set only on the connection the toxic actually resets.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use tokio::time::Instant;

use super::{Behaviour, Close, Item, ResetPeer, Step, ToxicKind, millis};

pub(crate) struct ResetPeerStage {
    attrs: ResetPeer,
    /// When the reset fires, once the first chunk arrived.
    reset_at: Option<Instant>,
}

impl ResetPeerStage {
    pub fn new(attrs: ResetPeer) -> Self {
        ResetPeerStage { attrs, reset_at: None }
    }
}

impl Behaviour for ResetPeerStage {
    fn poll(&mut self, queue: &mut VecDeque<Item>, now: Instant, _rng: &mut StdRng) -> Step {
        match queue.front() {
            None => self
                .reset_at
                .map_or(Step::Idle, |at| if now >= at { Step::Close(Close::Reset) } else { Step::Wait(at) }),
            Some(Item::Eof) if self.reset_at.is_none() => queue.pop_front().map_or(Step::Idle, Step::Emit),
            Some(_) => {
                let at = *self.reset_at.get_or_insert(now + millis(self.attrs.timeout));
                if now >= at { Step::Close(Close::Reset) } else { Step::Wait(at) }
            }
        }
    }

    fn poll_blocked(&mut self, now: Instant) -> Step {
        match self.reset_at {
            Some(at) if now >= at => Step::Close(Close::Reset),
            Some(at) => Step::Wait(at),
            None => Step::Idle,
        }
    }

    fn update(&mut self, kind: &ToxicKind) -> bool {
        let ToxicKind::ResetPeer(attrs) = kind else { return false };
        self.attrs = attrs.clone();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use std::time::Duration;

    #[test]
    fn first_chunk_starts_the_countdown_to_reset() {
        let t0 = Instant::now();
        let mut s = ResetPeerStage::new(ResetPeer { timeout: 30 });
        let mut q: VecDeque<Item> = VecDeque::new();
        let mut rng = rng();
        assert_eq!(s.poll(&mut q, t0, &mut rng), Step::Idle);
        q.push_back(data("a", t0));
        assert_eq!(s.poll(&mut q, t0, &mut rng), Step::Wait(t0 + Duration::from_millis(30)));
        assert_eq!(s.poll(&mut q, t0 + Duration::from_millis(30), &mut rng), Step::Close(Close::Reset));
    }

    #[test]
    fn a_direction_that_only_ends_is_not_reset() {
        let t0 = Instant::now();
        let mut s = ResetPeerStage::new(ResetPeer { timeout: 0 });
        let mut q: VecDeque<Item> = [Item::Eof].into();
        assert_eq!(s.poll(&mut q, t0, &mut rng()), Step::Emit(Item::Eof));
    }
}
