//! Network faults: nftables rules in a table of the fault's own, and tc qdiscs, optionally inside a named network
//! namespace (`/run/netns/NAME`, as `ip netns` makes them).
//!
//! The programs `nft`, `tc` and `ip` are run, not linked: they are what an operator would use to inspect or undo
//! by hand, and their messages name the missing kernel feature when something is unsupported.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::AgentError;

/// Runs `program args...` (inside `netns` when given) with `stdin`, returning stdout, or an error that carries
/// the command line, the exit status and stderr.
pub(crate) fn run(
    netns: Option<&str>,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, AgentError> {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    };
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let shown = show(netns, program, args);
    let mut child = command.spawn().map_err(|e| AgentError::Command {
        command: shown.clone(),
        detail: if e.kind() == std::io::ErrorKind::NotFound {
            format!("{} is not installed (not found on PATH)", if netns.is_some() { "ip" } else { program })
        } else {
            e.to_string()
        },
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(|e| AgentError::Command {
            command: shown.clone(),
            detail: format!("writing stdin: {e}"),
        })?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| AgentError::Command { command: shown.clone(), detail: e.to_string() })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        Err(AgentError::Command { command: shown, detail: format!("{}: {stderr}", output.status) })
    }
}

fn show(netns: Option<&str>, program: &str, args: &[&str]) -> String {
    let mut words = Vec::new();
    if let Some(ns) = netns {
        words.extend(["ip", "netns", "exec", ns]);
    }
    words.push(program);
    words.extend(args);
    words.join(" ")
}

/// Deletes the `inet` table `table`; succeeds when it does not exist.
pub(crate) fn delete_table(netns: Option<&str>, table: &str) -> Result<(), AgentError> {
    let listed = run(netns, "nft", &["list", "tables", "inet"], None)?;
    let exists = listed.lines().any(|line| line.trim() == format!("table inet {table}"));
    if !exists {
        return Ok(());
    }
    run(netns, "nft", &["delete", "table", "inet", table], None).map(|_| ())
}

/// Deletes the root qdisc of `device` if its handle is still `handle`; succeeds when it is gone or replaced.
pub(crate) fn delete_qdisc(netns: Option<&str>, device: &str, handle: &str) -> Result<(), AgentError> {
    let shown = match run(netns, "tc", &["qdisc", "show", "dev", device, "root"], None) {
        Ok(out) => out,
        // The device is gone (a veth whose peer namespace was deleted, say): so is its qdisc.
        Err(AgentError::Command { detail, .. }) if detail.contains("Cannot find device") => return Ok(()),
        Err(e) => return Err(e),
    };
    let ours = shown.lines().any(|line| line.split_whitespace().nth(2) == Some(handle));
    if !ours {
        return Ok(());
    }
    run(netns, "tc", &["qdisc", "del", "dev", device, "root", "handle", handle], None).map(|_| ())
}
