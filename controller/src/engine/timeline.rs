//! The kinds of a run's timeline events ([`EventKind`]) and the states a run goes through ([`RunState`]), each
//! with the exact string journals, JUnit, summaries and the store have always used.

use crate::report::{TimelineKind, Verdict};

/// What a timeline event records. Its string (`as_str`) is what progress lines and logs show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A lifecycle phase began: preflight, baseline, method, recovery, steady state, rollbacks.
    Phase,
    StepStarted,
    FaultInjected,
    FaultReverted,
    /// A fault found gone while its step ran (journaled as a note).
    FaultLost,
    Probe,
    Guardrail,
    Note,
}

// === impl EventKind ===

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Phase => "phase",
            EventKind::StepStarted => "step_started",
            EventKind::FaultInjected => "fault_injected",
            EventKind::FaultReverted => "fault_reverted",
            EventKind::FaultLost => "fault_lost",
            EventKind::Probe => "probe",
            EventKind::Guardrail => "guardrail",
            EventKind::Note => "note",
        }
    }

    /// The kind a journal records (a lost fault is a note there, as it always was).
    pub fn journal(self) -> TimelineKind {
        match self {
            EventKind::Phase => TimelineKind::Phase,
            EventKind::StepStarted => TimelineKind::StepStarted,
            EventKind::FaultInjected => TimelineKind::FaultInjected,
            EventKind::FaultReverted => TimelineKind::FaultReverted,
            EventKind::Probe => TimelineKind::Probe,
            EventKind::Guardrail => TimelineKind::Guardrail,
            EventKind::FaultLost | EventKind::Note => TimelineKind::Note,
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `kind == "fault_reverted"`: compared by its string.
impl PartialEq<&str> for EventKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for EventKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// Where a run started through a controller is; its string is what the store and `chaos runs` show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Checked and planned, not started yet.
    Planned,
    /// A dry run: planned, nothing applied (terminal).
    DryRun,
    Running,
    /// Stopped by a halt (terminal).
    Halted,
    /// Finished with a verdict (terminal).
    Finished(Verdict),
}

// === impl RunState ===

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Planned => "planned",
            RunState::DryRun => "dry-run",
            RunState::Running => "running",
            RunState::Halted => "halted",
            RunState::Finished(verdict) => verdict.as_str(),
        }
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Journals, JUnit, summaries and the store read these strings: they never change.
    #[test]
    fn kinds_and_states_keep_their_strings() {
        let kinds = [
            (EventKind::Phase, "phase"),
            (EventKind::StepStarted, "step_started"),
            (EventKind::FaultInjected, "fault_injected"),
            (EventKind::FaultReverted, "fault_reverted"),
            (EventKind::FaultLost, "fault_lost"),
            (EventKind::Probe, "probe"),
            (EventKind::Guardrail, "guardrail"),
            (EventKind::Note, "note"),
        ];
        for (kind, text) in kinds {
            assert_eq!(kind.as_str(), text);
            assert!(kind == text);
            // The journal's kind serializes to the same string, except a lost fault (a note there).
            let journal = serde_json::to_value(kind.journal()).unwrap();
            let expected = if kind == EventKind::FaultLost { "note" } else { text };
            assert_eq!(journal, serde_json::json!(expected));
        }
        let states = [
            (RunState::Planned, "planned"),
            (RunState::DryRun, "dry-run"),
            (RunState::Running, "running"),
            (RunState::Halted, "halted"),
            (RunState::Finished(Verdict::Passed), "passed"),
            (RunState::Finished(Verdict::Inconclusive), "inconclusive"),
        ];
        for (state, text) in states {
            assert_eq!(state.as_str(), text);
        }
    }
}
