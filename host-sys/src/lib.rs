//! `chaos-host-sys`: the few host pieces the agent (`chaos-agent`) and the proxy's transparent interception
//! (`chaos-proxy`) both need, in one leaf crate so neither depends on the other.
//!
//! # Layout
//! - [`proc_stat`]: the one reader of `/proc/PID/stat` ([`proc_stat::stat`], [`proc_stat::start_time`]): a
//!   process's identity is its pid and its start time.
//! - [`nft`]: runs `nft` (inside a named network namespace when asked, entered by a thread of its own) and
//!   deletes a table idempotently.
//! - [`owned`]: "an nftables table we own, removed when its owner dies": table names that encode their owner
//!   (pid namespace, pid, start time), and [`owned::remove_stale`], which deletes the tables of owners that no
//!   longer run.
//!
//! It does not decide what goes in a table (the agent's drop rules, the interception's redirects), and keeps
//! no state: everything it knows about a table is in the table's name.

pub mod nft;
pub mod owned;
pub mod proc_stat;
