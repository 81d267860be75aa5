//! `limit_data`: forwards `bytes` bytes in its direction, truncating the chunk that crosses the limit, then
//! closes the connection. The count is per connection and direction and survives updates of the toxic.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use tokio::time::Instant;

use super::{Behaviour, Chunk, Item, LimitData, Step, ToxicKind};

pub(crate) struct LimitDataStage {
    attrs: LimitData,
    /// Bytes already forwarded on this link.
    sent: u64,
}

impl LimitDataStage {
    pub fn new(attrs: LimitData) -> Self {
        LimitDataStage { attrs, sent: 0 }
    }

    fn remaining(&self) -> u64 {
        u64::try_from(self.attrs.bytes).unwrap_or(0).saturating_sub(self.sent)
    }
}

impl Behaviour for LimitDataStage {
    fn poll(&mut self, queue: &mut VecDeque<Item>, _now: Instant, _rng: &mut StdRng) -> Step {
        let Some(Item::Data(chunk)) = queue.front_mut() else {
            return queue.pop_front().map_or(Step::Idle, Step::Emit);
        };
        let remaining = self.remaining();
        if remaining == 0 {
            return Step::Emit(Item::Eof);
        }
        let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(chunk.data.len());
        let data = chunk.data.split_to(take);
        let at = chunk.at;
        if chunk.data.is_empty() {
            queue.pop_front();
        }
        self.sent += take as u64;
        if self.remaining() == 0 {
            // The limit is reached: the end of stream follows right behind this chunk.
            queue.clear();
            queue.push_back(Item::Eof);
        }
        Step::Emit(Item::Data(Chunk { data, at }))
    }

    fn update(&mut self, kind: &ToxicKind) -> bool {
        let ToxicKind::LimitData(attrs) = kind else { return false };
        self.attrs = attrs.clone();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn forwards_the_limit_then_ends_the_stream() {
        let t0 = Instant::now();
        let mut s = LimitDataStage::new(LimitData { bytes: 5 });
        let mut q: VecDeque<Item> = [data("abc", t0)].into();
        let mut rng = rng();
        let (out, _) = drain(&mut s, &mut q, t0, &mut rng);
        assert_eq!(text(&out), "abc");
        q.push_back(data("defg", t0));
        let (out, _) = drain(&mut s, &mut q, t0, &mut rng);
        assert_eq!(text(&out), "de<eof>");
    }

    #[test]
    fn zero_closes_on_the_first_chunk_and_count_survives_updates() {
        let t0 = Instant::now();
        let mut s = LimitDataStage::new(LimitData { bytes: 0 });
        let mut q: VecDeque<Item> = [data("a", t0)].into();
        assert_eq!(s.poll(&mut q, t0, &mut rng()), Step::Emit(Item::Eof));

        let mut s = LimitDataStage::new(LimitData { bytes: 3 });
        let mut q: VecDeque<Item> = [data("ab", t0)].into();
        drain(&mut s, &mut q, t0, &mut rng());
        assert!(s.update(&ToxicKind::LimitData(LimitData { bytes: 4 })));
        q.push_back(data("cdef", t0));
        let (out, _) = drain(&mut s, &mut q, t0, &mut rng());
        assert_eq!(text(&out), "cd<eof>");
    }
}
