//! `Count` and the seeded choice among matched processes.

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::AgentError;

/// How many of the matched processes to hit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Count {
    /// Exactly this many; fewer matches is an error rather than a smaller blast.
    Exactly(u32),
    /// A fraction in `(0, 1]` of the matches, rounded up, at least one.
    Percent(f64),
}

// === impl Count ===

impl Count {
    /// Refuses counts that can never be satisfied: zero, or a fraction outside `(0, 1]`.
    pub fn validate(&self) -> Result<(), AgentError> {
        let invalid = |reason: String| AgentError::Invalid { what: "count", reason };
        match *self {
            Count::Exactly(0) => Err(invalid("expected at least 1 process, found 0".into())),
            Count::Percent(p) if !(p > 0.0 && p <= 1.0) => {
                Err(invalid(format!("expected a fraction above 0 and at most 1, found {p}")))
            }
            _ => Ok(()),
        }
    }

    /// How many of `matched` processes this count chooses; `None` when `Exactly` wants more than matched.
    pub fn of(&self, matched: usize) -> Option<usize> {
        match *self {
            Count::Exactly(n) => (n as usize <= matched).then_some(n as usize),
            Count::Percent(p) => {
                let exact = p * matched as f64;
                // 0.3 × 10 is 3.0000000000000004 in floating point: snap to the integer before rounding up.
                let snapped = if (exact - exact.round()).abs() < 1e-9 { exact.round() } else { exact.ceil() };
                Some((snapped as usize).clamp(1, matched.max(1)).min(matched))
            }
        }
    }
}

/// Chooses `k` of `items` (already sorted by pid), reproducibly for a given seed; the result keeps pid order.
pub(crate) fn choose<T: Clone>(items: &[T], k: usize, seed: u64) -> Vec<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut picked = rand::seq::index::sample(&mut rng, items.len(), k.min(items.len())).into_vec();
    picked.sort_unstable();
    picked.into_iter().filter_map(|i| items.get(i).cloned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounds_up_and_hits_at_least_one() {
        let cases =
            [(0.3, 10, 3), (0.25, 3, 1), (0.5, 3, 2), (0.01, 5, 1), (1.0, 7, 7), (0.34, 3, 2), (0.5, 1, 1)];
        for (p, matched, want) in cases {
            assert_eq!(Count::Percent(p).of(matched), Some(want), "{p} of {matched}");
        }
    }

    #[test]
    fn exactly_needs_enough_matches() {
        assert_eq!(Count::Exactly(2).of(3), Some(2));
        assert_eq!(Count::Exactly(4).of(3), None);
    }

    #[test]
    fn invalid_counts_are_refused() {
        assert!(Count::Exactly(0).validate().is_err());
        for p in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(Count::Percent(p).validate().unwrap_err().to_string().contains("fraction"), "{p}");
        }
        assert!(Count::Percent(1.0).validate().is_ok());
    }

    #[test]
    fn choice_is_reproducible_per_seed_and_varies_across_seeds() {
        let items: Vec<u32> = (100..120).collect();
        assert_eq!(choose(&items, 5, 42), choose(&items, 5, 42));
        let distinct: std::collections::HashSet<Vec<u32>> = (0..10).map(|s| choose(&items, 5, s)).collect();
        assert!(distinct.len() > 1);
        let picked = choose(&items, 5, 7);
        assert!(picked.windows(2).all(|w| w[0] < w[1]), "kept in order: {picked:?}");
        assert_eq!(choose(&items, 20, 3), items);
    }
}
