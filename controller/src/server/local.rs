//! What an experiment would do on the controller's own host: command probes without `agent` or `hosts`,
//! process targets without `hosts`, host faults without a target, and `${env:NAME}` (which would read the
//! controller's environment into the experiment). A run through the controller touches only agents (under
//! their policies), so these are refused before anything is stored or run, unless the controller was started
//! with [`ALLOW_FLAG`].

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::error::ApiError;

use crate::experiment::faults::FaultParams;
use crate::experiment::{self, Checked, CheckedKind, CheckedStep, HOST_TARGET};

/// The `chaos controller` flag that lets runs act on the controller's host.
pub const ALLOW_FLAG: &str = "--allow-local-effects";

/// Parses an experiment submitted to the controller. Unless `allowed`, `${env:NAME}` is not answered from the
/// controller's environment (its secrets are not for API token holders): such a file is refused
/// (FAILED_PRECONDITION, at the reference's position). Other errors are INVALID_ARGUMENT.
/// SLO references come from `catalog` (the controller's registry); `file:` references are refused.
pub fn parse(
    file: &str,
    source: &str,
    vars: &[(String, String)],
    allowed: bool,
    catalog: &dyn experiment::SloCatalog,
) -> Result<Checked, ApiError> {
    let files = experiment::SloFiles::Refused(experiment::slo_refs::FILES_REFUSED.into());
    let slos = experiment::SloSources::new(&files, catalog);
    if allowed {
        let env = |name: &str| std::env::var(name).ok();
        return experiment::parse_with_slos(file, source, vars, &env, slos)
            .map_err(|d| ApiError::InvalidArgument(d.to_string()));
    }
    let asked = Mutex::new(BTreeSet::new());
    let env = |name: &str| {
        crate::fleet::lock(&asked).insert(name.to_string());
        None
    };
    let parsed = experiment::parse_with_slos(file, source, vars, &env, slos);
    let asked = asked.into_inner().unwrap_or_else(|p| p.into_inner());
    parsed.map_err(|d| {
        if asked.is_empty() {
            return ApiError::InvalidArgument(d.to_string());
        }
        let names: Vec<String> = asked.iter().map(|n| format!("${{env:{n}}}")).collect();
        ApiError::FailedPrecondition(format!(
            "{d}\nrefused: {} would read the controller's environment, which a run through the controller \
             never does unless it was started with {ALLOW_FLAG}; pass values as variables instead",
            names.join(", ")
        ))
    })
}

/// Every part of `exp` that acts on the host running it, one line each, naming the section and the fix.
pub fn local_effects(exp: &Checked) -> Vec<String> {
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
    for (section, steps) in [("method", exp.method()), ("rollbacks", exp.rollbacks())] {
        host_faults(section, steps, &mut found);
    }
    found
}

fn host_faults(section: &str, steps: &[CheckedStep], found: &mut Vec<String>) {
    for step in steps {
        match step.kind() {
            CheckedKind::Fault(f) if matches!(f.params, FaultParams::Host(_)) && f.target == HOST_TARGET => {
                found.push(format!(
                    "{section} step `{}` applies a host fault on the controller's host (give it a target with \
                     `hosts: {{labels}}`)",
                    step.label()
                ));
            }
            CheckedKind::Parallel(inner) => host_faults(section, inner, found),
            _ => {}
        }
    }
}

/// FAILED_PRECONDITION listing every local effect of `exp`, unless there is none or `allowed`.
pub fn check(exp: &Checked, allowed: bool) -> Result<(), ApiError> {
    let found = local_effects(exp);
    if allowed || found.is_empty() {
        return Ok(());
    }
    Err(ApiError::FailedPrecondition(format!(
        "refused: a run through the controller acts only on agents, and this experiment would act on the \
         controller's own host (the controller was not started with {ALLOW_FLAG}):\n  - {}",
        found.join("\n  - ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::NoRegistry;

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
        let refused = tonic::Status::from(check(&exp, false).unwrap_err());
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().contains(ALLOW_FLAG), "{}", refused.message());
        check(&exp, true).unwrap();
    }

    #[test]
    fn the_controllers_environment_is_read_only_when_allowed() {
        let source = "apiVersion: chaos/v1\ntitle: \"home is ${env:HOME}\"\nmethod:\n  - { wait: 1s }\n";
        let refused = tonic::Status::from(parse("env.yaml", source, &[], false, &NoRegistry).unwrap_err());
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        let message = refused.message();
        assert!(message.contains("env.yaml:2:") && message.contains("${env:HOME}"), "{message}");
        assert!(message.contains(ALLOW_FLAG), "{message}");
        let overridden = [("home".to_string(), "/root".to_string())];
        let exp =
            parse("env.yaml", &source.replace("env:HOME", "home"), &overridden, false, &NoRegistry).unwrap();
        assert_eq!(exp.title, "home is /root");
        if std::env::var_os("HOME").is_some() {
            parse("env.yaml", source, &[], true, &NoRegistry).unwrap();
        }
        let bad = tonic::Status::from(
            parse("bad.yaml", "apiVersion: chaos/v1\n", &[], false, &NoRegistry).unwrap_err(),
        );
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    }
}
