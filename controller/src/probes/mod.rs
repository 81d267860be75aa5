//! Steady-state probes: checks that must hold before and after the method. One file per kind ([`http`],
//! [`tcp`], [`command`], [`prometheus`]); each returns what it expected and what it found, with numbers, so a
//! verdict can quote it.
//!
//! A probe never retries and never panics: every way it can go wrong (bad URL, refused connection, timeout,
//! unparsable answer) is a failed [`ProbeResult`] with a detail saying so.

pub mod command;
pub mod http;
pub mod prometheus;
pub mod tcp;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chaos_proto::v1::{ProbeResult as AgentProbeResult, RunProbe};
use tokio::time::Instant;

use crate::experiment::model::Probe;

/// The agents a command probe with `agent` or `hosts` runs on: the controller's fleet (a run through a
/// controller). A small trait so that probes do not depend on the fleet.
pub trait Agents: Send + Sync {
    /// Ids of the connected agents whose labels include every pair of `labels`, sorted.
    fn matching(&self, labels: &BTreeMap<String, String>) -> Vec<String>;

    /// Asks `agent` to run `probe` under its policy and waits for what it reports.
    fn run_command<'a>(
        &'a self,
        agent: &'a str,
        probe: RunProbe,
    ) -> Pin<Box<dyn Future<Output = Result<AgentProbeResult, String>> + Send + 'a>>;
}

/// The outcome of one probe run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// The probe's name in the experiment.
    pub name: String,
    pub ok: bool,
    /// What was expected and what was found, e.g. `expected status 200, got 503 after 12 ms`.
    pub detail: String,
    /// How long the probe took.
    pub elapsed: Duration,
}

/// What a probe kind reports: `Ok(what was found)` when the check holds, `Err(what was expected and what was
/// found)` when it does not.
pub type Check = Result<String, String>;

/// Runs `probe`'s one check (http, tcp, command or prometheus) on this host.
pub async fn run(probe: &Probe) -> ProbeResult {
    run_with(probe, None).await
}

/// Runs `probe`'s one check; a command probe with `agent` or `hosts` runs on those `agents`.
pub async fn run_with(probe: &Probe, agents: Option<&dyn Agents>) -> ProbeResult {
    let started = Instant::now();
    let kinds =
        [probe.http.is_some(), probe.tcp.is_some(), probe.command.is_some(), probe.prometheus.is_some()];
    let check = match (kinds.iter().filter(|k| **k).count(), probe) {
        (1, Probe { http: Some(spec), .. }) => http::check(spec).await,
        (1, Probe { tcp: Some(spec), .. }) => tcp::check(spec).await,
        (1, Probe { command: Some(spec), .. }) => command::check_on(spec, &probe.name, agents).await,
        (1, Probe { prometheus: Some(spec), .. }) => prometheus::check(spec).await,
        (0, _) => Err("the probe has no check: expected one of http, tcp, command, prometheus".to_string()),
        (n, _) => {
            Err(format!("the probe has {n} checks: expected exactly one of http, tcp, command, prometheus"))
        }
    };
    let elapsed = started.elapsed();
    let (ok, detail) = match check {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    tracing::debug!(probe = %probe.name, ok, %detail, elapsed_ms = elapsed.as_millis() as u64, "probe ran");
    ProbeResult { name: probe.name.clone(), ok, detail, elapsed }
}

/// Milliseconds for details: whole below 10 ms would read "0 ms", so those get one decimal.
pub(crate) fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 { format!("{ms:.1} ms") } else { format!("{} ms", d.as_millis()) }
}

/// The first `max` characters of `text` as a quoted Rust string, marked when cut.
pub(crate) fn snippet(text: &str, max: usize) -> String {
    let mut cut: String = text.chars().take(max).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well_at_any_scale() {
        assert_eq!(ms(Duration::from_micros(1500)), "1.5 ms");
        assert_eq!(ms(Duration::from_millis(312)), "312 ms");
    }

    #[test]
    fn snippets_are_quoted_and_marked_when_cut() {
        assert_eq!(snippet("ok", 10), "\"ok\"");
        assert_eq!(snippet("abcdef", 3), "\"abc…\"");
    }

    #[tokio::test]
    async fn a_probe_needs_exactly_one_check() {
        let probe = Probe { name: "empty".into(), http: None, tcp: None, command: None, prometheus: None };
        let result = run(&probe).await;
        assert!(!result.ok);
        assert!(result.detail.contains("no check"), "{}", result.detail);
    }
}
