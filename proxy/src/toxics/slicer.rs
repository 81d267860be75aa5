//! `slicer`: splits each chunk into slices of about `average_size` bytes (± `size_variation`) and pauses
//! `delay` microseconds after each slice, exercising clients that assume one read returns one message.
//!
//! Toxiproxy halves a chunk recursively around its middle ± variation until a piece is within the variation of
//! the average. The split point here is clamped inside the piece, so every piece shrinks and the split always
//! ends; `average_size` and `size_variation` both 0 (which crashes Toxiproxy) is refused.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rand::rngs::StdRng;
use tokio::time::Instant;

use super::{Behaviour, Chunk, Item, Slicer, Step, ToxicKind};

/// Cuts a chunk as a slicer toxic does: the data path's reading of [`Slicer`].
pub trait SliceLengths {
    /// Slice lengths for a chunk of `len` bytes, in order.
    fn slice_lengths(&self, len: usize, rng: &mut StdRng) -> Vec<usize>;
}

impl SliceLengths for Slicer {
    fn slice_lengths(&self, len: usize, rng: &mut StdRng) -> Vec<usize> {
        let average = usize::try_from(self.average_size).unwrap_or(0);
        let variation = usize::try_from(self.size_variation).unwrap_or(0);
        let mut out = Vec::new();
        // Depth-first over (start, end) pieces, right halves pushed first so slices come out in order.
        let mut stack = vec![(0usize, len)];
        while let Some((start, end)) = stack.pop() {
            let size = end - start;
            if size <= average.saturating_add(variation) || size <= 1 {
                if size > 0 {
                    out.push(size);
                }
                continue;
            }
            let mut mid = start + size / 2;
            // A variation wider than the piece cannot move the split further than the piece itself.
            let variation = variation.min(size);
            if variation > 0 {
                let offset = rng.random_range(0..2 * variation) as isize - variation as isize;
                mid = mid.saturating_add_signed(offset);
            }
            let mid = mid.clamp(start + 1, end - 1);
            stack.push((mid, end));
            stack.push((start, mid));
        }
        out
    }
}

pub(crate) struct SlicerStage {
    attrs: Slicer,
    /// Slice lengths still to cut from the head chunk.
    pending: VecDeque<usize>,
    /// When the next slice may go (after the previous slice's delay).
    next_at: Option<Instant>,
}

impl SlicerStage {
    pub fn new(attrs: Slicer) -> Self {
        SlicerStage { attrs, pending: VecDeque::new(), next_at: None }
    }
}

impl Behaviour for SlicerStage {
    fn poll(&mut self, queue: &mut VecDeque<Item>, now: Instant, rng: &mut StdRng) -> Step {
        if let Some(at) = self.next_at {
            if now < at {
                return Step::Wait(at);
            }
            self.next_at = None;
        }
        let Some(Item::Data(chunk)) = queue.front_mut() else {
            return queue.pop_front().map_or(Step::Idle, Step::Emit);
        };
        if self.pending.is_empty() {
            self.pending = self.attrs.slice_lengths(chunk.data.len(), rng).into();
        }
        let len = self.pending.pop_front().unwrap_or(chunk.data.len()).min(chunk.data.len());
        let data: Bytes = chunk.data.split_to(len);
        let at = chunk.at;
        if chunk.data.is_empty() {
            queue.pop_front();
            self.pending.clear();
        }
        let delay = Duration::from_micros(u64::try_from(self.attrs.delay).unwrap_or(0));
        if !delay.is_zero() {
            self.next_at = Some(now + delay);
        }
        Step::Emit(Item::Data(Chunk { data, at }))
    }

    fn update(&mut self, kind: &ToxicKind) -> bool {
        let ToxicKind::Slicer(attrs) = kind else { return false };
        self.attrs = attrs.clone();
        self.pending.clear();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::toxics::Attributes;

    #[test]
    fn slices_cover_the_chunk_within_the_variation() {
        let attrs = Slicer { average_size: 10, size_variation: 3, delay: 0 };
        let mut rng = rng();
        for len in [1, 9, 13, 14, 100, 32 * 1024] {
            let slices = attrs.slice_lengths(len, &mut rng);
            assert_eq!(slices.iter().sum::<usize>(), len);
            assert!(slices.iter().all(|&s| s > 0 && s <= 13), "{len}: {slices:?}");
        }
    }

    #[test]
    fn degenerate_sizes_are_refused_and_tiny_averages_terminate() {
        let both_zero = Slicer { average_size: 0, size_variation: 0, delay: 0 };
        assert!(both_zero.validate().is_err());
        let tiny = Slicer { average_size: 0, size_variation: 1, delay: 0 };
        assert!(tiny.validate().is_ok());
        let slices = tiny.slice_lengths(1000, &mut rng());
        assert_eq!(slices.iter().sum::<usize>(), 1000);
    }

    #[test]
    fn waits_delay_microseconds_after_each_slice() {
        let t0 = Instant::now();
        let mut s = SlicerStage::new(Slicer { average_size: 2, size_variation: 0, delay: 500 });
        let mut q: VecDeque<Item> = [data("abcd", t0)].into();
        let mut rng = rng();
        let (out, step) = drain(&mut s, &mut q, t0, &mut rng);
        assert_eq!(text(&out), "ab");
        assert_eq!(step, Step::Wait(t0 + Duration::from_micros(500)));
        let (out, _) = drain(&mut s, &mut q, t0 + Duration::from_micros(500), &mut rng);
        assert_eq!(text(&out), "cd");
        assert!(q.is_empty());
    }
}
