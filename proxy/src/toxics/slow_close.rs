//! `slow_close`: when the source ends, waits `delay` ms before the destination is closed.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use tokio::time::Instant;

use super::{Behaviour, Item, SlowClose, Step, ToxicKind, millis};

pub(crate) struct SlowCloseStage {
    attrs: SlowClose,
    /// When the end of stream may pass, once it reached this toxic.
    close_at: Option<Instant>,
}

impl SlowCloseStage {
    pub fn new(attrs: SlowClose) -> Self {
        SlowCloseStage { attrs, close_at: None }
    }
}

impl Behaviour for SlowCloseStage {
    fn poll(&mut self, queue: &mut VecDeque<Item>, now: Instant, _rng: &mut StdRng) -> Step {
        match queue.front() {
            None => Step::Idle,
            Some(Item::Data(_)) => queue.pop_front().map_or(Step::Idle, Step::Emit),
            Some(Item::Eof) => {
                let at = *self.close_at.get_or_insert(now + millis(self.attrs.delay));
                if now < at { Step::Wait(at) } else { queue.pop_front().map_or(Step::Idle, Step::Emit) }
            }
        }
    }

    fn update(&mut self, kind: &ToxicKind) -> bool {
        let ToxicKind::SlowClose(attrs) = kind else { return false };
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
    fn data_passes_and_the_close_waits() {
        let t0 = Instant::now();
        let mut s = SlowCloseStage::new(SlowClose { delay: 200 });
        let mut q: VecDeque<Item> = [data("a", t0), Item::Eof].into();
        let mut rng = rng();
        let (out, step) = drain(&mut s, &mut q, t0, &mut rng);
        assert_eq!(text(&out), "a");
        assert_eq!(step, Step::Wait(t0 + Duration::from_millis(200)));
        let (out, _) = drain(&mut s, &mut q, t0 + Duration::from_millis(200), &mut rng);
        assert_eq!(text(&out), "<eof>");
    }
}
