//! An applied interception's nftables table, from apply to removal: [`Interception`] (loaded in one
//! transaction, deleted by call or on drop), [`remove_stale`] for the tables of owners that died, and
//! [`check`], what this host lacks. The table is one "owned" table of `chaos-host-sys`: its name carries the
//! owner, and nft runs (in a named namespace when asked) through that crate.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chaos_host_sys::nft;
use chaos_host_sys::owned::{self, Owner};

use super::spec::InterceptSpec;
use super::{InterceptError, TABLE_PREFIX, validate_netns};

/// `CAP_NET_ADMIN` from `include/uapi/linux/capability.h`: a bit of `CapEff` in `/proc/self/status`.
const CAP_NET_ADMIN: u32 = 12;

/// An applied interception: one nftables table, deleted by [`Interception::remove`] or on drop.
#[derive(Debug)]
pub struct Interception {
    spec: InterceptSpec,
    table: String,
    /// Whether the table has been deleted.
    removed: Mutex<bool>,
}

// === impl Interception ===

impl Interception {
    /// Validates `spec` and loads its table in one transaction; on error nothing is applied.
    ///
    /// Runs nft synchronously (a few milliseconds). Needs `nft` and `CAP_NET_ADMIN`.
    pub fn apply(spec: &InterceptSpec) -> Result<Interception, InterceptError> {
        let table = table_name();
        let script = spec.script(&table)?;
        require_basics()?;
        let netns = spec.netns.as_deref();
        if let Err(e) = nft::run(netns, &["-f", "-"], Some(&script)).map_err(InterceptError::from) {
            tracing::warn!(%table, ?netns, port = spec.port, to = spec.to, error = %e, "interception failed");
            return Err(explain(e));
        }
        tracing::info!(%table, ?netns, port = spec.port, to = spec.to, "interception applied");
        Ok(Interception { spec: spec.clone(), table, removed: Mutex::new(false) })
    }

    /// The nftables table (family `inet`).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The named namespace the table lives in, `None` for this process's own.
    pub fn netns(&self) -> Option<&str> {
        self.spec.netns.as_deref()
    }

    pub fn spec(&self) -> &InterceptSpec {
        &self.spec
    }

    /// Deletes the table. Synchronous and idempotent; succeeds when the table or its namespace is already
    /// gone. On error the interception stays applied, so the next call retries.
    pub fn remove(&self) -> Result<(), InterceptError> {
        self.remove_by("call")
    }

    /// Whether a removal (by call or drop) has completed.
    pub fn is_removed(&self) -> bool {
        *self.removed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remove_by(&self, by: &'static str) -> Result<(), InterceptError> {
        let mut removed = self.removed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *removed {
            return Ok(());
        }
        let (table, netns) = (&self.table, self.netns());
        match nft::delete_table(netns, table).map_err(|e| explain(e.into())) {
            Ok(()) => {
                *removed = true;
                tracing::info!(%table, ?netns, by, "interception removed");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(%table, ?netns, by, error = %e, "interception removal failed");
                Err(e)
            }
        }
    }
}

impl Drop for Interception {
    fn drop(&mut self) {
        // Logged; a destructor has no one to return it to. `remove_stale` at the next start retries.
        let _ = self.remove_by("drop");
    }
}

/// `chaos_intercept_<pid ns>_<pid>_<start time>_<n>`: unique across processes and restarts (a reused pid has
/// another start time), and enough for [`remove_stale`] to tell whether the owner still runs.
fn table_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    Owner::current().table_name(TABLE_PREFIX, &NEXT.fetch_add(1, Ordering::Relaxed).to_string())
}

/// Deletes every interception table in `netns` (`None`: this process's own) whose owner no longer runs, and
/// returns their names. Tables of live owners, of owners in another pid namespace, and names this module
/// would not have made are left alone.
pub fn remove_stale(netns: Option<&str>) -> Result<Vec<String>, InterceptError> {
    validate_netns(netns)?;
    require_basics()?;
    let removed = owned::remove_stale(netns, TABLE_PREFIX).map_err(|e| explain(e.into()))?;
    for table in &removed {
        tracing::info!(%table, ?netns, "stale interception removed");
    }
    Ok(removed)
}

/// Refuses (naming what is missing) a host that cannot intercept: no `nft`, no `CAP_NET_ADMIN`, or a kernel
/// whose nf_tables cannot load nat chains with `redirect`. The kernel is probed by loading a table shaped
/// like a real one in a throwaway network namespace, so the host's ruleset is never touched; without the
/// right to create one (`CAP_SYS_ADMIN`), that part is skipped and [`Interception::apply`] reports what nft
/// says. Takes 10 to 30 ms: call it once, at start.
pub fn check() -> Result<(), InterceptError> {
    require_basics()?;
    std::thread::scope(|scope| {
        let probe = scope.spawn(probe_in_throwaway_netns);
        probe.join().unwrap_or_else(|_| Err(InterceptError::Unsupported("the probe thread panicked".into())))
    })
}

/// Loads a table with every expression a real one uses (both hooks, both source families) in a new network
/// namespace of this thread's own, which the kernel frees once the thread and nft are gone.
fn probe_in_throwaway_netns() -> Result<(), InterceptError> {
    // Only this thread moves; nft, started from it, inherits its namespace.
    if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
        return Ok(());
    }
    let sources = vec!["192.0.2.0/24".into(), "2001:db8::/32".into()];
    let script = InterceptSpec { sources, ..InterceptSpec::new(9, 10) }.script("chaos_intercept_probe")?;
    nft::run(None, &["-f", "-"], Some(&script)).map(drop).map_err(|e| {
        let e = InterceptError::from(e);
        InterceptError::Unsupported(format!(
            "expected nf_tables to load inet nat chains with redirect (kernel modules nft_chain_nat, \
             nft_redir), found: {}",
            nft_errors(&e)
        ))
    })
}

/// The cheap part of [`check`]: the `nft` program and `CAP_NET_ADMIN`.
fn require_basics() -> Result<(), InterceptError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|dir| dir.join("nft").is_file()) {
        return Err(InterceptError::Unsupported(
            "expected the nft program, found none on PATH (Debian package nftables)".into(),
        ));
    }
    if !has_net_admin() {
        return Err(InterceptError::Unsupported(
            "expected CAP_NET_ADMIN (run as root), found it missing from the effective capabilities".into(),
        ));
    }
    Ok(())
}

/// Whether `CAP_NET_ADMIN` is in `CapEff` of `/proc/self/status`; true when that cannot be read (nft then
/// says what is wrong).
fn has_net_admin() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return true };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_none_or(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// A failed nft command, with "operation not permitted" turned into what is missing.
fn explain(error: InterceptError) -> InterceptError {
    match &error {
        InterceptError::Command { detail, .. } if detail.contains("Operation not permitted") => {
            InterceptError::Unsupported(format!(
                "expected the right to change nftables (CAP_NET_ADMIN, run as root), found: {}",
                nft_errors(&error)
            ))
        }
        _ => error,
    }
}

/// The lines of a failed nft command that say what went wrong (nft repeats the script and marks it).
fn nft_errors(error: &InterceptError) -> String {
    let text = match error {
        InterceptError::Command { detail, .. } => detail.clone(),
        other => other.to_string(),
    };
    chaos_host_sys::nft::error_lines(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_carry_their_owner() {
        let name = table_name();
        let owner = Owner::of(TABLE_PREFIX, &name).unwrap();
        assert_eq!(owner, Owner::current());
        assert_eq!((owner.pid, owner.is_gone()), (std::process::id(), Some(false)));
        assert_ne!(table_name(), name, "a counter tells tables of one process apart");
        assert_eq!(Owner::of(TABLE_PREFIX, "chaos_intercept_probe"), None);
        assert_eq!(Owner::of(TABLE_PREFIX, "chaos_agent_1_2_3_fault_3"), None);
    }
}
