//! Incident numbers over a period (`chaos incident stats`): per service, per severity and overall, the count
//! of incidents and, for each of time to detect, acknowledge and recover, how many incidents have it, the
//! mean, and the p50 and p90 by the nearest-rank method.
//!
//! Nearest rank: of `n` values sorted ascending, the p-th percentile is the value at 1-based rank
//! `ceil(p / 100 × n)` (rank 1 for p = 0). It is always one of the values measured, never interpolated.
//! An incident with several services counts once under each; one with none counts under `(none)`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Incident, Severity};

/// The group name of incidents with no service.
pub const NO_SERVICE: &str = "(none)";

/// The p-th percentile (0..=100) of `values` by nearest rank; `None` when there are none.
pub fn nearest_rank(values: &[i64], p: u32) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as u64;
    // ceil(p × n / 100) in integers, at least 1.
    let rank = (u64::from(p.min(100)) * n).div_ceil(100).max(1);
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
}

/// One measured time over a group of incidents.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figure {
    /// How many incidents of the group have it.
    pub count: usize,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<i64>,
    pub p90_ms: Option<i64>,
}

impl Figure {
    pub fn of(values: &[i64]) -> Figure {
        let mean_ms =
            (!values.is_empty()).then(|| values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64);
        Figure {
            count: values.len(),
            mean_ms,
            p50_ms: nearest_rank(values, 50),
            p90_ms: nearest_rank(values, 90),
        }
    }
}

/// The numbers of one group (a service, a severity, or all).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Group {
    pub name: String,
    pub incidents: usize,
    /// Not resolved yet (they have no time to recover).
    pub open: usize,
    pub ttd: Figure,
    pub tta: Figure,
    pub ttr: Figure,
}

/// Everything `stats` answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    pub from_ms: i64,
    pub to_ms: i64,
    pub overall: Group,
    pub by_service: Vec<Group>,
    pub by_severity: Vec<Group>,
}

/// The numbers of `incidents` (those the caller chose: started within `[from_ms, to_ms)`).
pub fn stats(incidents: &[Incident], from_ms: i64, to_ms: i64) -> Stats {
    let mut by_service: BTreeMap<String, Vec<&Incident>> = BTreeMap::new();
    let mut by_severity: BTreeMap<Severity, Vec<&Incident>> = BTreeMap::new();
    for inc in incidents {
        if inc.services.is_empty() {
            by_service.entry(NO_SERVICE.to_string()).or_default().push(inc);
        }
        for s in &inc.services {
            by_service.entry(s.clone()).or_default().push(inc);
        }
        by_severity.entry(inc.severity).or_default().push(inc);
    }
    let all: Vec<&Incident> = incidents.iter().collect();
    Stats {
        from_ms,
        to_ms,
        overall: group("all", &all),
        by_service: by_service.iter().map(|(name, list)| group(name, list)).collect(),
        by_severity: by_severity.iter().map(|(sev, list)| group(sev.as_str(), list)).collect(),
    }
}

fn group(name: &str, list: &[&Incident]) -> Group {
    let values = |f: fn(&Incident) -> Option<i64>| list.iter().filter_map(|i| f(i)).collect::<Vec<i64>>();
    Group {
        name: name.to_string(),
        incidents: list.len(),
        open: list.iter().filter(|i| i.resolved_ms.is_none()).count(),
        ttd: Figure::of(&values(Incident::time_to_detect_ms)),
        tta: Figure::of(&values(Incident::time_to_acknowledge_ms)),
        ttr: Figure::of(&values(Incident::time_to_recover_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_matches_hand_computed_values() {
        // Sorted: 15 20 35 40 50. p50: ceil(2.5) = rank 3 → 35; p90: ceil(4.5) = rank 5 → 50;
        // p20: rank 1 → 15; p40: ceil(2.0) = rank 2 → 20.
        let v = [40, 15, 50, 35, 20];
        assert_eq!(nearest_rank(&v, 50), Some(35));
        assert_eq!(nearest_rank(&v, 90), Some(50));
        assert_eq!(nearest_rank(&v, 20), Some(15));
        assert_eq!(nearest_rank(&v, 40), Some(20));
        assert_eq!(nearest_rank(&v, 0), Some(15));
        assert_eq!(nearest_rank(&v, 100), Some(50));
        // Ten values 1..=10: p90 is rank 9 → 9, p50 rank 5 → 5.
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!((nearest_rank(&ten, 50), nearest_rank(&ten, 90)), (Some(5), Some(9)));
        assert_eq!(nearest_rank(&[7], 90), Some(7));
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn figures_have_count_mean_and_percentiles() {
        let f = Figure::of(&[60_000, 120_000, 300_000]);
        assert_eq!(f.count, 3);
        assert_eq!(f.mean_ms, Some(160_000.0));
        assert_eq!((f.p50_ms, f.p90_ms), (Some(120_000), Some(300_000)));
        assert_eq!(Figure::of(&[]), Figure::default());
    }
}
