//! The command probe: a program run without a shell must exit with the expected code (0 unless set) and,
//! optionally, print a text on stdout or stderr, within the timeout. A command still running at its timeout
//! is killed.
//!
//! With `agent` or `hosts` it runs on those agents instead ([`check_on`]), through the controller's fleet and
//! under each agent's policy (`probe_commands`); the agent reports, this module judges.

use std::process::Stdio;

use tokio::process::Command;
use tokio::time::Instant;

use super::{Agents, Check, ms, snippet};
use crate::experiment::model::CommandProbe;
use crate::http::DEFAULT_TIMEOUT;

/// Characters of the output quoted in a failure.
const QUOTED: usize = 300;

/// The most output an agent sends back for one probe (what `output_contains` can see).
const REMOTE_OUTPUT: u32 = 64 * 1024;

/// Runs `spec` where it says: here, or on its `agent` / every agent matching its `hosts` (which needs
/// `agents`, the controller's fleet). `name` is the probe's name, for the agents' logs.
pub async fn check_on(spec: &CommandProbe, name: &str, agents: Option<&dyn Agents>) -> Check {
    if spec.is_local() {
        return check(spec).await;
    }
    let (agents, chosen) = choose(spec, agents)?;
    let timeout = spec.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
    let shown = spec.run.join(" ");
    let mut passed = Vec::new();
    // One agent after the other: a probe is a quick check, and the first failure is the verdict's reason.
    for agent in &chosen {
        let request = chaos_proto::v1::RunProbe {
            name: name.to_string(),
            run_id: String::new(),
            argv: spec.run.clone(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            max_output_bytes: REMOTE_OUTPUT,
            check_only: false,
        };
        let result = agents.run_command(agent, request).await.map_err(|e| format!("on {agent}: {e}"))?;
        if !result.error.is_empty() {
            return Err(format!("on {agent}: {}", result.error));
        }
        let took = ms(std::time::Duration::from_millis(result.elapsed_ms));
        if result.timed_out {
            return Err(format!("`{shown}` on {agent} was still running after {}; killed it", ms(timeout)));
        }
        let mut text = String::from_utf8_lossy(&result.output).into_owned();
        if result.truncated {
            text.push('…');
        }
        let killed = result.signal.map(|s| format!("signal {s}"));
        let ok = judge(spec, &format!("{shown}` on `{agent}"), result.exit_code, killed, &text, &took)?;
        passed.push(ok);
    }
    Ok(passed.join("; "))
}

/// Before a run starts: every agent a remote command probe would run on is connected and its policy allows
/// the command (asked with `check_only`; nothing runs). Returns the agents; a local probe has none.
pub async fn preflight(
    spec: &CommandProbe,
    name: &str,
    agents: Option<&dyn Agents>,
) -> Result<Vec<String>, String> {
    if spec.is_local() {
        return Ok(Vec::new());
    }
    let (agents, chosen) = choose(spec, agents)?;
    for agent in &chosen {
        let request = chaos_proto::v1::RunProbe {
            name: name.to_string(),
            run_id: String::new(),
            argv: spec.run.clone(),
            timeout_ms: 0,
            max_output_bytes: 0,
            check_only: true,
        };
        let result = agents.run_command(agent, request).await.map_err(|e| format!("on {agent}: {e}"))?;
        if !result.error.is_empty() {
            return Err(format!("on {agent}: {}", result.error));
        }
    }
    Ok(chosen)
}

/// The agents a remote command probe runs on: its `agent`, or every connected agent matching its `hosts`.
fn choose<'a>(
    spec: &CommandProbe,
    agents: Option<&'a dyn Agents>,
) -> Result<(&'a dyn Agents, Vec<String>), String> {
    let wanted = match (&spec.agent, &spec.hosts) {
        (Some(agent), _) => format!("agent {agent}"),
        (None, Some(hosts)) => format!("the agents matching hosts {hosts:?}"),
        (None, None) => String::new(),
    };
    let Some(agents) = agents else {
        return Err(format!(
            "the probe runs on {wanted}: run the experiment through a controller (`chaos run --controller URL`)"
        ));
    };
    let chosen = match (&spec.agent, &spec.hosts) {
        (Some(agent), _) => vec![agent.clone()],
        (None, Some(hosts)) => agents.matching(hosts),
        (None, None) => Vec::new(),
    };
    if chosen.is_empty() {
        return Err(format!("no connected agent to run it on: none matches hosts {:?}", spec.hosts));
    }
    Ok((agents, chosen))
}

pub async fn check(spec: &CommandProbe) -> Check {
    let Some((program, args)) = spec.run.split_first() else {
        return Err("the command probe has an empty `run` list: expected a program and its arguments".into());
    };
    let timeout = spec.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
    let shown = spec.run.join(" ");
    let started = Instant::now();
    // kill_on_drop: when the timeout drops the `output()` future, the child is killed, not left behind.
    let child = Command::new(program).args(args).stdin(Stdio::null()).kill_on_drop(true).output();
    let output = match tokio::time::timeout(timeout, child).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("cannot run {program:?}: {e}")),
        Err(_) => return Err(format!("`{shown}` was still running after {}; killed it", ms(timeout))),
    };
    let took = ms(started.elapsed());
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    judge(spec, &shown, output.status.code(), Some(output.status.to_string()), &text, &took)
}

/// The verdict on a finished command: `code` against the expected exit code (`killed` says how it ended
/// without one), then the output.
fn judge(
    spec: &CommandProbe,
    shown: &str,
    code: Option<i32>,
    killed: Option<String>,
    text: &str,
    took: &str,
) -> Check {
    let expected = spec.exit_code.unwrap_or(0);
    match code {
        Some(code) if code == expected => {}
        Some(code) => {
            return Err(format!(
                "`{shown}`: expected exit code {expected}, got {code} after {took}; output: {}",
                snippet(text.trim(), QUOTED)
            ));
        }
        None => {
            return Err(format!(
                "`{shown}`: expected exit code {expected}, got killed by a signal ({}) after {took}",
                killed.unwrap_or_default()
            ));
        }
    }
    if let Some(needle) = &spec.output_contains
        && !text.contains(needle.as_str())
    {
        return Err(format!(
            "`{shown}`: expected the output to contain {needle:?}, got {} bytes: {}",
            text.len(),
            snippet(text.trim(), QUOTED)
        ));
    }
    Ok(format!("`{shown}` exited {expected} in {took}"))
}
