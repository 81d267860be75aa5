//! The journal of a run ([`journal`]): what the reports (JSON, JUnit, Markdown) are made from, built from the
//! engine's [`Outcome`].

use std::time::Duration;

use super::{Outcome, RunConfig};
use crate::experiment::Checked;
use crate::probes::ProbeResult;

/// The journal of a run: what the reports (JSON, JUnit, Markdown) are made from.
pub fn journal(
    exp: &Checked,
    config: &RunConfig,
    outcome: &Outcome,
    started: std::time::SystemTime,
) -> crate::report::Journal {
    use crate::report::{
        self, ExperimentInfo, Journal, ProbeOutcome, ProbePhase, RecoveryOutcome, TimelineEntry,
    };
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let probes = |phase: ProbePhase, list: &[ProbeResult]| -> Vec<ProbeOutcome> {
        list.iter()
            .map(|p| ProbeOutcome {
                name: p.name.clone(),
                phase,
                ok: p.ok,
                detail: p.detail.clone(),
                elapsed_ms: ms(p.elapsed),
            })
            .collect()
    };
    let mut all_probes = probes(ProbePhase::Before, &outcome.probes_before);
    all_probes.extend(probes(ProbePhase::After, &outcome.probes_after));
    let mut signals = Vec::new();
    for (source, log) in &outcome.logs {
        let events = log.between(Duration::ZERO, outcome.duration + Duration::from_secs(1));
        signals.extend(report::signal_samples(
            source,
            &events,
            Duration::ZERO,
            outcome.duration,
            Duration::from_secs(1),
        ));
    }
    Journal {
        chaos_version: env!("CARGO_PKG_VERSION").to_string(),
        experiment: ExperimentInfo {
            title: exp.title.clone(),
            hypothesis: exp.hypothesis.clone(),
            file: Some(config.file.clone()),
        },
        seed: config.seed,
        started_at: report::format_rfc3339(started),
        duration_ms: ms(outcome.duration),
        verdict: outcome.verdict,
        reasons: outcome.reasons.clone(),
        timeline: outcome
            .timeline
            .iter()
            .map(|t| TimelineEntry {
                at_ms: ms(t.at),
                kind: t.kind.journal(),
                name: t.name.clone(),
                detail: t.detail.clone(),
                ok: t.ok,
            })
            .collect(),
        probes: all_probes,
        slos: outcome.slos.clone(),
        recovery: outcome
            .recovery
            .iter()
            .map(|(slo, ttr)| RecoveryOutcome { slo: slo.clone(), time_to_recover_ms: ttr.map(ms) })
            .collect(),
        signals,
    }
}
