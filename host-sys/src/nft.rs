//! Running `nft`: in this process's network namespace, or in a named one (`/run/netns/NAME`, as `ip netns`
//! makes them) entered with `setns(2)` by a thread of its own, so nft keeps the host's mount namespace (`ip
//! netns exec` remounts `/sys`, which hides `/sys/fs/cgroup` from nft's cgroup path lookup); and deleting a
//! table of family `inet` idempotently.

use std::fs::File;
use std::io::{self, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

/// Where the named network namespaces live.
pub const NETNS_DIR: &str = "/run/netns";

/// Why an nft command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NftError {
    /// The host cannot run it at all: no `nft` program, or the namespace could not be entered.
    #[error("{0}")]
    Unsupported(String),
    /// The command ran and failed; `detail` holds its exit status and stderr.
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
}

/// Runs `nft args...` with `stdin` (inside `netns` when given), returning stdout, or an error that carries the
/// command line, the exit status and stderr.
pub fn run(netns: Option<&str>, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
    let shown = match netns {
        Some(ns) => format!("nft {} (in netns {ns})", args.join(" ")),
        None => format!("nft {}", args.join(" ")),
    };
    let Some(ns) = netns else { return run_here(&shown, args, stdin) };
    let path = Path::new(NETNS_DIR).join(ns);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let failed = |detail: String| NftError::Command { command: shown.clone(), detail };
                let file =
                    File::open(&path).map_err(|e| failed(format!("opening {}: {e}", path.display())))?;
                // Only this thread moves; the nft it starts inherits the namespace.
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    NftError::Unsupported(format!(
                        "expected to enter netns {ns} (CAP_SYS_ADMIN, run as root), found setns failing: {e}"
                    ))
                })?;
                run_here(&shown, args, stdin)
            })
            .join()
            .unwrap_or_else(|_| Err(NftError::Command { command: shown.clone(), detail: "panicked".into() }))
    })
}

fn run_here(shown: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
    let failed = |detail: String| NftError::Command { command: shown.to_string(), detail };
    let mut command = Command::new("nft");
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            NftError::Unsupported(
                "expected the nft program, found none on PATH (Debian package nftables)".into(),
            )
        } else {
            failed(e.to_string())
        }
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // The pipe closes at the end of this block, so nft sees the end of its input.
        if let Err(e) = pipe.write_all(text.as_bytes()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!("writing stdin: {e}")));
        }
    }
    let output = child.wait_with_output().map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(failed(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim())))
    }
}

/// Deletes the `inet` table `table`; succeeds when it does not exist, or its namespace does not any more.
pub fn delete_table(netns: Option<&str>, table: &str) -> Result<(), NftError> {
    if netns_gone(netns) {
        return Ok(());
    }
    match run(netns, &["delete", "table", "inet", table], None) {
        Ok(_) => Ok(()),
        // ENOENT from the kernel: the table is already gone.
        Err(NftError::Command { detail, .. }) if detail.contains("No such file or directory") => Ok(()),
        Err(_) if netns_gone(netns) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The names of the `inet` tables in `netns` (`None`: this process's own).
pub fn inet_tables(netns: Option<&str>) -> Result<Vec<String>, NftError> {
    let listed = run(netns, &["list", "tables"], None)?;
    Ok(listed.lines().filter_map(|l| l.trim().strip_prefix("table inet ")).map(str::to_string).collect())
}

/// A named namespace that no longer exists: whatever was loaded in it went with it.
pub fn netns_gone(netns: Option<&str>) -> bool {
    netns.is_some_and(|ns| !Path::new(NETNS_DIR).join(ns).exists())
}

/// Refuses a namespace name `ip netns` could not have made, or one that does not exist under `/run/netns`,
/// saying what was expected and what was found.
pub fn check_netns(ns: &str) -> Result<(), String> {
    if ns.is_empty() || ns.contains('/') || ns == "." || ns == ".." || ns.chars().any(char::is_whitespace) {
        return Err(format!(
            "expected the name of a namespace under {NETNS_DIR} (no '/' or spaces), found {ns:?}"
        ));
    }
    if !Path::new(NETNS_DIR).join(ns).exists() {
        return Err(format!(
            "expected an existing network namespace, found no {NETNS_DIR}/{ns} (`ip netns add {ns}` makes one)"
        ));
    }
    Ok(())
}

/// The lines of a failed nft command's output that say what went wrong (nft repeats the script and marks the
/// error under it), joined with `; `; the first line when none says `Error`.
pub fn error_lines(output: &str) -> String {
    let lines: Vec<&str> = output.lines().map(str::trim).filter(|l| l.contains("Error")).collect();
    if lines.is_empty() { output.lines().next().unwrap_or_default().to_string() } else { lines.join("; ") }
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_lines_keep_what_went_wrong() {
        let output = "table inet t {\n  chain c {\n^^^\nError: syntax error\nError: no such file";
        assert_eq!(super::error_lines(output), "Error: syntax error; Error: no such file");
        assert_eq!(super::error_lines("permission denied\nmore"), "permission denied");
    }

    use super::*;

    #[test]
    fn a_table_in_a_namespace_that_is_gone_is_deleted_without_running_nft() {
        assert!(netns_gone(Some("chaos-no-such-netns")) && !netns_gone(None));
        delete_table(Some("chaos-no-such-netns"), "chaos_x").unwrap();
    }

    #[test]
    fn bad_namespace_names_are_refused_saying_what_was_expected() {
        for bad in ["", "a/b", ".", "..", "a b"] {
            assert!(check_netns(bad).unwrap_err().starts_with("expected the name of a namespace"), "{bad:?}");
        }
        assert!(
            check_netns("chaos-no-such-netns")
                .unwrap_err()
                .contains("found no /run/netns/chaos-no-such-netns")
        );
    }
}
