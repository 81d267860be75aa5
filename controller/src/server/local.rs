//! What an experiment would do on the controller's own host: command probes without `agent` or `hosts`,
//! process targets without `hosts`, host faults without a target. A run through the controller touches only
//! agents (under their policies), so these are refused before anything is stored or run, unless the controller
//! was started with [`ALLOW_FLAG`].

use tonic::Status;

use crate::experiment::HOST_TARGET;
use crate::experiment::checked::StepKind;
use crate::experiment::faults::FaultParams;
use crate::experiment::model::{Experiment, Step};

/// The `chaos controller` flag that lets runs act on the controller's host.
pub const ALLOW_FLAG: &str = "--allow-local-effects";

/// Every part of `exp` that acts on the host running it, one line each, naming the section and the fix.
pub fn local_effects(exp: &Experiment) -> Vec<String> {
    let mut found = Vec::new();
    for probe in &exp.steady_state {
        if let Some(command) = probe.command.as_ref().filter(|c| c.is_local()) {
            found.push(format!(
                "steady_state probe `{}` runs `{}` on the controller's host (give it `agent: ID` or `hosts: \
                 {{labels}}` to run it on an agent, under that agent's policy)",
                probe.name,
                command.run.join(" ")
            ));
        }
    }
    for (name, target) in &exp.targets {
        if target.processes.is_some() && target.hosts.is_none() {
            found.push(format!(
                "target `{name}` selects processes on the controller's host (add `hosts: {{labels}}` to select \
                 them on agents)"
            ));
        }
    }
    for (section, steps) in [("method", &exp.method), ("rollbacks", &exp.rollbacks)] {
        host_faults(section, steps, &mut found);
    }
    found
}

fn host_faults(section: &str, steps: &[Step], found: &mut Vec<String>) {
    for step in steps {
        match step.kind() {
            Ok(StepKind::Fault(f)) if matches!(f.params, FaultParams::Host(_)) && f.target == HOST_TARGET => {
                found.push(format!(
                    "{section} step `{}` applies a host fault on the controller's host (give it a target with \
                     `hosts: {{labels}}`)",
                    step.label()
                ));
            }
            Ok(StepKind::Parallel(inner)) => host_faults(section, inner, found),
            _ => {}
        }
    }
}

/// FAILED_PRECONDITION listing every local effect of `exp`, unless there is none or `allowed`.
pub fn check(exp: &Experiment, allowed: bool) -> Result<(), Status> {
    let found = local_effects(exp);
    if allowed || found.is_empty() {
        return Ok(());
    }
    Err(Status::failed_precondition(format!(
        "refused: a run through the controller acts only on agents, and this experiment would act on the \
         controller's own host (the controller was not started with {ALLOW_FLAG}):\n  - {}",
        found.join("\n  - ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_local_effect_is_named_and_remote_ones_are_not() {
        let source = "apiVersion: chaos/v1
title: local
targets:
  here: { processes: { name: sleep } }
  there: { processes: { name: sleep }, hosts: { role: web } }
steady_state:
  - { name: mine, command: { run: [sh, -c, 'id > /tmp/x'] } }
  - { name: theirs, command: { run: [/bin/true], agent: web-1 } }
  - { name: fleet, command: { run: [/bin/true], hosts: { role: web } } }
method:
  - { name: burn, fault: cpu_stress, with: { workers: 1 }, duration: 1s }
  - { name: kill there, fault: kill, target: there }
";
        let exp = crate::experiment::parse("local.yaml", source, &[]).unwrap();
        let found = local_effects(&exp);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found[0].contains("probe `mine` runs `sh -c id > /tmp/x`"), "{}", found[0]);
        assert!(found[1].contains("target `here`"), "{}", found[1]);
        assert!(found[2].contains("method step `burn`"), "{}", found[2]);
        let refused = check(&exp, false).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().contains(ALLOW_FLAG), "{}", refused.message());
        check(&exp, true).unwrap();
    }
}
