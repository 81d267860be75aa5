//! The kinds of a run's timeline events ([`EventKind`]), each with the exact string journals, JUnit, summaries
//! and the store have always used. A controller run's state is the store's `RunState`.

use crate::report::TimelineKind;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Journals, JUnit, summaries and the store read these strings: they never change.
    #[test]
    fn kinds_keep_their_strings() {
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
    }
}
