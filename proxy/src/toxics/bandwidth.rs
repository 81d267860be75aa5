//! `bandwidth`: paces a direction to `rate` KB/s (KB = 1000 bytes), per connection and direction.
//!
//! Chunks larger than 100 ms worth of bytes are split into 100 ms slices, as Toxiproxy does. The pacing clock
//! is virtual (each slice is due when the previous one was due plus its transmit time), so late timer wake-ups
//! never accumulate into a lower rate. `rate <= 0` stalls the direction until the toxic changes: users rely on
//! it to "cut the pipe" without closing it.

use std::collections::VecDeque;
use std::time::Duration;

use rand::rngs::StdRng;
use tokio::time::Instant;

use super::{Bandwidth, Behaviour, Chunk, Item, Step, ToxicKind};

pub(crate) struct BandwidthStage {
    attrs: Bandwidth,
    /// When the link finished sending the previous slice, on the virtual clock.
    clock: Option<Instant>,
    /// When the head slice is due, once computed.
    due: Option<(Instant, usize)>,
}

impl BandwidthStage {
    pub fn new(attrs: Bandwidth) -> Self {
        BandwidthStage { attrs, clock: None, due: None }
    }
}

/// Time to send `bytes` at `rate` KB/s.
fn transmit_time(bytes: usize, rate: i64) -> Duration {
    let rate = u64::try_from(rate).unwrap_or(1).max(1);
    Duration::from_nanos((bytes as u64).saturating_mul(1_000_000) / rate)
}

impl Behaviour for BandwidthStage {
    fn poll(&mut self, queue: &mut VecDeque<Item>, now: Instant, _rng: &mut StdRng) -> Step {
        let Some(Item::Data(chunk)) = queue.front_mut() else {
            return queue.pop_front().map_or(Step::Idle, Step::Emit);
        };
        if self.attrs.rate <= 0 {
            return Step::Idle;
        }
        let (due, len) = *self.due.get_or_insert_with(|| {
            let slice = usize::try_from(self.attrs.rate.saturating_mul(100)).unwrap_or(usize::MAX);
            let len = chunk.data.len().min(slice);
            // A chunk that arrived while the link was still busy starts when the link frees up.
            let start = self.clock.map_or(chunk.at, |c| c.max(chunk.at));
            (start + transmit_time(len, self.attrs.rate), len)
        });
        if now < due {
            return Step::Wait(due);
        }
        self.clock = Some(due);
        self.due = None;
        if len < chunk.data.len() {
            let data = chunk.data.split_to(len);
            return Step::Emit(Item::Data(Chunk { data, at: chunk.at }));
        }
        queue.pop_front().map_or(Step::Idle, Step::Emit)
    }

    fn capacity(&self) -> usize {
        // Enough queued chunks to cover ~20 ms at the rate keep the virtual clock fed between timer ticks,
        // so pacing stays exact at high rates (at 100 MB/s a 32 KiB chunk lasts only 0.33 ms).
        let bytes_per_20ms = usize::try_from(self.attrs.rate.max(0)).unwrap_or(0).saturating_mul(20);
        (4 + bytes_per_20ms / (32 * 1024)).min(1024)
    }

    fn update(&mut self, kind: &ToxicKind) -> bool {
        let ToxicKind::Bandwidth(attrs) = kind else { return false };
        self.attrs = attrs.clone();
        self.due = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn paces_bytes_at_the_rate_in_kilobytes_of_1000() {
        let t0 = Instant::now();
        // 10 KB/s: 500 bytes take 50 ms.
        let mut s = BandwidthStage::new(Bandwidth { rate: 10 });
        let mut q: VecDeque<Item> = [data(&"x".repeat(500), t0), data(&"y".repeat(500), t0)].into();
        let mut rng = rng();
        assert_eq!(s.poll(&mut q, t0, &mut rng), Step::Wait(t0 + Duration::from_millis(50)));
        let (out, step) = drain(&mut s, &mut q, t0 + Duration::from_millis(50), &mut rng);
        assert_eq!(out.len(), 1);
        assert_eq!(step, Step::Wait(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn large_chunks_go_out_in_100ms_slices() {
        let t0 = Instant::now();
        let mut s = BandwidthStage::new(Bandwidth { rate: 1 }); // 100 bytes per 100 ms slice
        let mut q: VecDeque<Item> = [data(&"z".repeat(250), t0)].into();
        let mut rng = rng();
        let mut sizes = Vec::new();
        let mut now = t0;
        for _ in 0..10 {
            match s.poll(&mut q, now, &mut rng) {
                Step::Emit(Item::Data(c)) => sizes.push((c.data.len(), now - t0)),
                Step::Wait(t) => now = t,
                _ => break,
            }
        }
        assert_eq!(
            sizes,
            vec![
                (100, Duration::from_millis(100)),
                (100, Duration::from_millis(200)),
                (50, Duration::from_millis(250))
            ]
        );
    }

    #[test]
    fn late_wakeups_do_not_lower_the_rate() {
        let t0 = Instant::now();
        let mut s = BandwidthStage::new(Bandwidth { rate: 1000 }); // 1000 bytes = 1 ms
        let mut q: VecDeque<Item> = (0..10).map(|_| data(&"a".repeat(1000), t0)).collect();
        // Woken 5 ms late: the five chunks already due go at once.
        let (out, step) = drain(&mut s, &mut q, t0 + Duration::from_millis(5), &mut rng());
        assert_eq!(out.len(), 5);
        assert_eq!(step, Step::Wait(t0 + Duration::from_millis(6)));
    }

    #[test]
    fn rate_zero_stalls_until_updated() {
        let t0 = Instant::now();
        let mut s = BandwidthStage::new(Bandwidth { rate: 0 });
        let mut q: VecDeque<Item> = [data("a", t0)].into();
        let mut rng = rng();
        assert_eq!(s.poll(&mut q, t0 + Duration::from_secs(60), &mut rng), Step::Idle);
        assert!(s.update(&ToxicKind::Bandwidth(Bandwidth { rate: 1000 })));
        let (out, _) = drain(&mut s, &mut q, t0 + Duration::from_secs(61), &mut rng);
        assert_eq!(text(&out), "a");
    }
}
