//! The seeded generator of the kill matrices' moments: a failing sequence replays from its printed seed.

/// The variable that replays a kill matrix: `CHAOS_KILL_SEED=N`.
pub const SEED_VAR: &str = "CHAOS_KILL_SEED";

/// A seeded generator (xorshift64*) for the moments a kill matrix kills at: `CHAOS_KILL_SEED=N` replays a
/// failing sequence; the seed is printed.
#[derive(Debug)]
pub struct KillRng {
    pub seed: u64,
    state: u64,
}

impl KillRng {
    /// Seeded from `CHAOS_KILL_SEED` when set (a bad value fails the test), else a fixed default.
    pub fn new() -> KillRng {
        let seed = match std::env::var(SEED_VAR) {
            Ok(text) => {
                text.parse().unwrap_or_else(|e| panic!("{SEED_VAR}={text:?}: expected a number ({e})"))
            }
            Err(_) => 0x6b6d_6174,
        };
        eprintln!("kill matrix seed {seed} ({SEED_VAR}={seed} replays it)");
        KillRng::seeded(seed)
    }

    pub fn seeded(seed: u64) -> KillRng {
        KillRng { seed, state: seed | 1 }
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

impl Default for KillRng {
    fn default() -> KillRng {
        KillRng::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_one_sequence() {
        let draw = |seed| {
            let mut rng = KillRng::seeded(seed);
            (0..8).map(|_| rng.below(1000)).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(44));
        assert!(draw(7).iter().all(|&n| n < 1000));
    }
}
