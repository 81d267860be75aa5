//! Fixtures shared by the tests of every crate in the workspace (a dev-dependency only, never published).
//!
//! Each fixture is real: processes are real `sleep` children, namespaces are made with `ip netns`, ports come
//! from the kernel (port 0), and waits poll a condition until a deadline instead of sleeping for a guess. A
//! fixture that cannot be set up fails the test that asked for it, with what failed; it never skips silently.
//!
//! # Layout
//! - [`wait`]: conditions polled until a deadline, blocking and async (tokio time, so paused clocks work too),
//!   and [`wait::clean_within`] for "gone within this bound" checks.
//! - [`dir`]: [`TempDir`], a fresh directory removed on drop, and [`nonce`], a number unique across processes.
//! - [`process`]: [`Victim`], a `sleep` child with a command line no other process has, killed on drop; readers
//!   of `/proc/PID/stat` (state, start time) and process lookups by parent, name or command line.
//! - [`net`]: [`free_port`], [`sh`], network namespaces ([`Netns`], [`NetnsPair`], [`Lan`]) deleted on drop,
//!   and [`net::in_netns`] to run code with sockets inside one.
//! - [`skip`]: `CHAOS_TEST_SKIP`, the one documented way to let a test pass on a machine that lacks one of its
//!   real parts (curl, a cgroup, Prometheus...). CI sets none of it.
//! - [`prometheus`]: a real Prometheus server on a kernel-chosen port, optionally backfilled with history
//!   through promtool, and `promtool` itself.
//! - [`alertmanager`]: a real Alertmanager (Debian's `prometheus-alertmanager`) on a kernel-chosen port, without
//!   clustering, whose receiver sends nothing.
//! - [`containerd`]: a real containerd with its own root, state and socket, CNI bridge networking and a
//!   busybox image imported locally, for the pod tests; everything it started is gone on drop.
//! - [`mutate`]: seeded mutation of documents for the parsers' fuzz tests.
//! - [`kill`]: [`KillRng`], the seeded generator of the kill matrices' moments.
//! - [`venv`]: Python venvs in the build directory, built once under a lock and reused, and
//!   [`venv::run_within`], a command run to completion within a deadline.
//!
//! What it does *not* hold: fixtures of one crate (a controller on its own runtime, the proxy's in-process API
//! client, the binary's `chaos proxy` child); those stay in that crate's tests, built on these.

pub mod alertmanager;
pub mod containerd;
pub mod dir;
pub mod kill;
pub mod mutate;
pub mod net;
pub mod process;
pub mod prometheus;
pub mod skip;
pub mod venv;
pub mod wait;

pub use dir::{TempDir, nonce};
pub use kill::KillRng;
pub use net::{Lan, Netns, NetnsPair, free_port, sh};
pub use process::{Victim, process_state, start_time};
pub use wait::{clean_within, wait_until};
