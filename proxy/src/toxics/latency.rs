//! `latency`: delays every chunk by `latency` ± `jitter` ms counted from when the chunk was read (the
//! attributes are [`Latency`], in `chaos-proxy-api`).
//!
//! Toxiproxy semantics: delays are not cumulative (writes 10 ms apart with 100 ms latency arrive 100 ms after
//! each was sent), order is kept, chained latency toxics add up, and a deep queue keeps throughput uncapped.
//! Beyond Toxiproxy, `distribution` picks how the delay is drawn: `uniform` (Toxiproxy's integer
//! `latency + U[-jitter, jitter)`), `normal` (mean `latency`, standard deviation `jitter`), `pareto` (minimum
//! `latency`, mean `latency + jitter`: a long tail) or `lognormal` (median `latency`, standard deviation `jitter`).

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::{Distribution as _, LogNormal, Normal, Pareto};
use tokio::time::Instant;

use super::{Behaviour, Chunk, Distribution, Item, Latency, Step, ToxicKind};

/// No drawn delay exceeds this, so a long-tailed distribution cannot hold a connection for days.
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// Draws a latency toxic's delays: the data path's reading of [`Latency`] (also used by `http_delay`).
pub trait Sample {
    /// Draws one delay.
    fn sample(&self, rng: &mut StdRng) -> Duration;
}

impl Sample for Latency {
    fn sample(&self, rng: &mut StdRng) -> Duration {
        let latency = (self.latency.max(0) as f64).min(MAX_DELAY.as_millis() as f64);
        let jitter = (self.jitter.max(0) as f64).min(MAX_DELAY.as_millis() as f64);
        let ms = match self.distribution {
            Distribution::Uniform => {
                // Toxiproxy: integer milliseconds, `Int63n(2*jitter) - jitter`, negatives clamp to zero.
                // Both clamp to the maximum delay first, so no arithmetic here can overflow.
                let cap = MAX_DELAY.as_millis() as i64;
                let (base, jitter) = (self.latency.clamp(-cap, cap), self.jitter.min(cap));
                let j = if jitter > 0 { rng.random_range(0..2 * jitter) - jitter } else { 0 };
                (base + j).max(0) as f64
            }
            Distribution::Normal => match Normal::new(latency, jitter) {
                Ok(d) => d.sample(rng),
                Err(_) => latency,
            },
            Distribution::Pareto => {
                if latency <= 0.0 || jitter <= 0.0 {
                    latency
                } else {
                    // Mean of Pareto(scale, shape) is shape*scale/(shape-1); solving for mean = latency+jitter.
                    match Pareto::new(latency, 1.0 + latency / jitter) {
                        Ok(d) => d.sample(rng),
                        Err(_) => latency,
                    }
                }
            }
            Distribution::Lognormal => {
                if latency <= 0.0 {
                    0.0
                } else {
                    // Median m = e^mu; sd/m = sqrt(x(x-1)) with x = e^(sigma^2), so x = (1+sqrt(1+4r^2))/2.
                    let r = jitter / latency;
                    let sigma = ((1.0 + (1.0 + 4.0 * r * r).sqrt()) / 2.0).ln().sqrt();
                    match LogNormal::new(latency.ln(), sigma) {
                        Ok(d) => d.sample(rng),
                        Err(_) => latency,
                    }
                }
            }
        };
        Duration::from_secs_f64((ms.max(0.0) / 1000.0).min(MAX_DELAY.as_secs_f64()))
    }
}

pub(crate) struct LatencyStage {
    attrs: Latency,
    /// When the head chunk may leave; drawn when the chunk reaches the head, as Toxiproxy draws per chunk.
    head_deadline: Option<Instant>,
}

impl LatencyStage {
    pub fn new(attrs: Latency) -> Self {
        LatencyStage { attrs, head_deadline: None }
    }
}

impl Behaviour for LatencyStage {
    fn poll(&mut self, queue: &mut VecDeque<Item>, now: Instant, rng: &mut StdRng) -> Step {
        match queue.front() {
            None => Step::Idle,
            Some(Item::Eof) => queue.pop_front().map_or(Step::Idle, Step::Emit),
            Some(Item::Data(chunk)) => {
                let deadline = *self.head_deadline.get_or_insert_with(|| chunk.at + self.attrs.sample(rng));
                if now < deadline {
                    return Step::Wait(deadline);
                }
                self.head_deadline = None;
                match queue.pop_front() {
                    // The chunk leaves stamped with its deadline, so a second latency toxic adds to this one.
                    Some(Item::Data(c)) => Step::Emit(Item::Data(Chunk { data: c.data, at: deadline })),
                    other => other.map_or(Step::Idle, Step::Emit),
                }
            }
        }
    }

    fn capacity(&self) -> usize {
        // Toxiproxy buffers 1024 chunks before a latency toxic so throughput is not capped by the delay.
        1024
    }

    fn update(&mut self, kind: &ToxicKind) -> bool {
        let ToxicKind::Latency(attrs) = kind else { return false };
        self.attrs = attrs.clone();
        // Pending chunks are re-evaluated against their read time with the new values.
        self.head_deadline = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use rand::SeedableRng;

    fn stage(latency: i64, jitter: i64) -> LatencyStage {
        LatencyStage::new(Latency { latency, jitter, distribution: Distribution::Uniform })
    }

    #[test]
    fn delay_counts_from_read_time_and_is_not_cumulative() {
        let t0 = Instant::now();
        let mut s = stage(100, 0);
        let mut q: VecDeque<Item> = [
            data("a", t0),
            data("b", t0 + Duration::from_millis(10)),
            data("c", t0 + Duration::from_millis(20)),
        ]
        .into();
        let mut rng = rng();
        assert_eq!(s.poll(&mut q, t0, &mut rng), Step::Wait(t0 + Duration::from_millis(100)));
        let (out, step) = drain(&mut s, &mut q, t0 + Duration::from_millis(100), &mut rng);
        assert_eq!(text(&out), "a");
        assert_eq!(step, Step::Wait(t0 + Duration::from_millis(110)));
        let (out, step) = drain(&mut s, &mut q, t0 + Duration::from_millis(120), &mut rng);
        assert_eq!(text(&out), "bc");
        assert_eq!(step, Step::Idle);
    }

    #[test]
    fn emitted_chunks_carry_their_deadline_so_chains_add() {
        let t0 = Instant::now();
        let mut s = stage(50, 0);
        let mut q: VecDeque<Item> = [data("a", t0)].into();
        let (out, _) = drain(&mut s, &mut q, t0 + Duration::from_millis(70), &mut rng());
        let Item::Data(c) = &out[0] else { panic!("expected data") };
        assert_eq!(c.at, t0 + Duration::from_millis(50));
    }

    #[test]
    fn eof_passes_after_pending_data() {
        let t0 = Instant::now();
        let mut s = stage(10, 0);
        let mut q: VecDeque<Item> = [data("a", t0), Item::Eof].into();
        let (out, _) = drain(&mut s, &mut q, t0 + Duration::from_millis(10), &mut rng());
        assert_eq!(text(&out), "a<eof>");
    }

    #[test]
    fn uniform_jitter_is_integer_and_within_bounds() {
        let attrs = Latency { latency: 100, jitter: 10, distribution: Distribution::Uniform };
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            let d = attrs.sample(&mut rng);
            assert!(d >= Duration::from_millis(90) && d < Duration::from_millis(110), "{d:?}");
            assert_eq!(d.subsec_nanos() % 1_000_000, 0);
        }
    }

    #[test]
    fn jitter_larger_than_latency_clamps_at_zero() {
        let attrs = Latency { latency: 5, jitter: 50, distribution: Distribution::Uniform };
        let mut rng = StdRng::seed_from_u64(2);
        assert!((0..1000).all(|_| attrs.sample(&mut rng) <= Duration::from_millis(55)));
    }

    #[test]
    fn distributions_have_the_documented_centre() {
        let n = 20_000;
        let mean = |dist, latency, jitter| {
            let attrs = Latency { latency, jitter, distribution: dist };
            let mut rng = StdRng::seed_from_u64(3);
            let mut v: Vec<f64> = (0..n).map(|_| attrs.sample(&mut rng).as_secs_f64() * 1000.0).collect();
            v.sort_by(f64::total_cmp);
            (v.iter().sum::<f64>() / n as f64, v[n / 2], v[0])
        };
        let (m, _, _) = mean(Distribution::Normal, 100, 10);
        assert!((m - 100.0).abs() < 1.0, "normal mean {m}");
        let (m, _, min) = mean(Distribution::Pareto, 100, 20);
        assert!((m - 120.0).abs() < 4.0, "pareto mean {m}");
        assert!(min >= 100.0, "pareto minimum {min}");
        let (_, median, _) = mean(Distribution::Lognormal, 100, 30);
        assert!((median - 100.0).abs() < 2.0, "lognormal median {median}");
    }

    #[test]
    fn update_re_evaluates_the_pending_head() {
        let t0 = Instant::now();
        let mut s = stage(1000, 0);
        let mut q: VecDeque<Item> = [data("a", t0)].into();
        let mut rng = rng();
        assert_eq!(s.poll(&mut q, t0, &mut rng), Step::Wait(t0 + Duration::from_secs(1)));
        assert!(s.update(&ToxicKind::Latency(Latency { latency: 10, ..Latency::default() })));
        assert_eq!(s.poll(&mut q, t0, &mut rng), Step::Wait(t0 + Duration::from_millis(10)));
    }
}
