//! An nftables table we own, removed when its owner dies: its name is a prefix, the owner (pid namespace, pid,
//! start time) and a suffix, so whoever lists the tables can tell whether the process that made one still
//! runs, and [`remove_stale`] deletes those whose owner is gone (SIGKILL, a crash). A reused pid has another
//! start time, so a table is never taken for a newer process's.

use std::sync::OnceLock;

use crate::nft::{self, NftError};
use crate::proc_stat;

/// The process a table belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The inode of the owner's pid namespace (`/proc/self/ns/pid` reads `pid:[4026531836]`); 0 if unknown.
    pub pidns: u64,
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat`; 0 if the owner could not read its own.
    pub start: u64,
}

impl Owner {
    /// This process, read once.
    pub fn current() -> Owner {
        static ME: OnceLock<Owner> = OnceLock::new();
        *ME.get_or_init(|| {
            let pid = std::process::id();
            let start = proc_stat::start_time(pid as i32).ok().flatten().unwrap_or(0);
            Owner { pidns: pid_namespace(), pid, start }
        })
    }

    /// `PREFIX<pid ns>_<pid>_<start>_SUFFIX`: unique across processes and restarts, and enough to tell whether
    /// the owner still runs.
    pub fn table_name(&self, prefix: &str, suffix: &str) -> String {
        format!("{prefix}{}_{}_{}_{suffix}", self.pidns, self.pid, self.start)
    }

    /// The owner encoded in `table`, a name [`Owner::table_name`] made with `prefix`; `None` for any other name.
    pub fn of(prefix: &str, table: &str) -> Option<Owner> {
        let mut parts = table.strip_prefix(prefix)?.splitn(4, '_');
        let mut next = || parts.next()?.parse::<u64>().ok();
        let (pidns, pid, start) = (next()?, next()?, next()?);
        parts.next().filter(|suffix| !suffix.is_empty())?;
        Some(Owner { pidns, pid: u32::try_from(pid).ok()?, start })
    }

    /// Whether this owner no longer runs: `None` when that cannot be told (it lives in another pid namespace,
    /// or `/proc` could not be read).
    pub fn is_gone(&self) -> Option<bool> {
        let ours = pid_namespace();
        if self.pidns != ours && self.pidns != 0 && ours != 0 {
            return None;
        }
        let pid = i32::try_from(self.pid).ok()?;
        match proc_stat::start_time(pid) {
            // Start time 0: the owner could not read its own; only a missing process is surely gone.
            Ok(Some(now)) => Some(self.start != 0 && now != self.start),
            Ok(None) => Some(true),
            Err(_) => None,
        }
    }
}

/// The inode of this process's pid namespace; 0 if unknown.
pub fn pid_namespace() -> u64 {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|link| {
            let text = link.to_string_lossy().into_owned();
            text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
        })
        .unwrap_or(0)
}

/// Deletes every `inet` table in `netns` (`None`: this process's own) named with `prefix` whose owner no
/// longer runs, and returns their names. Tables of live owners, of owners in another pid namespace, and
/// names [`Owner::table_name`] would not have made are left alone.
pub fn remove_stale(netns: Option<&str>, prefix: &str) -> Result<Vec<String>, NftError> {
    let mut removed = Vec::new();
    for table in nft::inet_tables(netns)? {
        if !table.starts_with(prefix) {
            continue;
        }
        match Owner::of(prefix, &table).and_then(|owner| owner.is_gone()) {
            Some(true) => {
                nft::delete_table(netns, &table)?;
                tracing::info!(%table, ?netns, "stale table removed: its owner is gone");
                removed.push(table);
            }
            Some(false) => {}
            None => tracing::debug!(%table, ?netns, "table of an owner this process cannot check kept"),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_carry_their_owner_and_tell_whether_it_runs() {
        let me = Owner::current();
        assert_eq!((me.pidns, me.pid), (pid_namespace(), std::process::id()));
        let name = me.table_name("chaos_test_", "fault_7");
        assert_eq!(Owner::of("chaos_test_", &name), Some(me));
        assert_eq!(me.is_gone(), Some(false));
        // A pid that cannot exist (above pid_max), and a start time that is not the live process's.
        assert_eq!(Owner { pid: 4_194_305, start: 1, ..me }.is_gone(), Some(true));
        assert_eq!(Owner { start: me.start + 1, ..me }.is_gone(), Some(true));
        assert_eq!(Owner { pidns: me.pidns + 1, pid: 4_194_305, start: 1 }.is_gone(), None);
        for other in ["chaos_test_probe", "chaos_test_1_2_3", "chaos_test_1_2_3_", "chaos_other_1_2_3_4"] {
            assert_eq!(Owner::of("chaos_test_", other), None, "{other}");
        }
    }

    /// Needs root and nft (as the agent's and the interception's tests do): the tables live in a network
    /// namespace of this test thread's own, so the host's ruleset is never touched.
    #[test]
    fn stale_tables_go_and_live_owners_keep_theirs() {
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("a network namespace of the test's own (run the tests as root)");
            let me = Owner::current();
            let live = me.table_name("chaos_test_", "0");
            let dead = Owner { pid: 4_194_305, start: 1, ..me }.table_name("chaos_test_", "1");
            let foreign = "chaos_other_1_2_3_4";
            let script: String =
                [&live, &dead, foreign].iter().map(|t| format!("create table inet {t}\n")).collect();
            nft::run(None, &["-f", "-"], Some(&script)).expect("nft loads the tables (install nftables)");
            assert_eq!(remove_stale(None, "chaos_test_").unwrap(), vec![dead.clone()]);
            let mut left = nft::inet_tables(None).unwrap();
            left.sort();
            assert_eq!(left, vec![foreign.to_string(), live.clone()]);
            nft::delete_table(None, &live).unwrap();
            nft::delete_table(None, &live).unwrap();
            assert_eq!(nft::inet_tables(None).unwrap(), vec![foreign.to_string()]);
        })
        .join()
        .unwrap();
    }
}
