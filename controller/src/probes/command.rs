//! The command probe: a program run without a shell must exit with the expected code (0 unless set) and,
//! optionally, print a text on stdout or stderr, within the timeout. A command still running at its timeout
//! is killed.

use std::process::Stdio;

use tokio::process::Command;
use tokio::time::Instant;

use super::{Check, ms, snippet};
use crate::experiment::model::CommandProbe;
use crate::http::DEFAULT_TIMEOUT;

/// Characters of the output quoted in a failure.
const QUOTED: usize = 300;

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
    let expected = spec.exit_code.unwrap_or(0);
    match output.status.code() {
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
                output.status
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
