//! The saturation sources, sampled once a second through the agent's [`Sampler`] into the
//! [`SaturationSample`]s a saturation SLO is judged on. Each poller owns one `Sampler` (its CPU figures are
//! rates since its own previous call). Every value is a fraction of this host's capacity:
//!
//! - `source: { host: cpu }`: the busy share of all CPUs' time since the previous sample (so the first sample
//!   comes one second after the sampler starts), `0..=1`.
//! - `source: { host: memory }`: `1 − MemAvailable/MemTotal`, the kernel's own estimate of what could be
//!   allocated without swapping, `0..=1`.
//! - `source: { host: load }`: the 1-minute load average divided by the number of CPUs. It exceeds 1 (100%)
//!   when more tasks are runnable or waiting on I/O than there are CPUs, so its ceiling may be above 100%.
//! - `source: { processes: TARGET, metric: cpu }`: the CPU time of every process the target's selector
//!   matches now, over the wall time since the previous sample, summed and divided by the number of CPUs: `1`
//!   is the whole machine busy with them, one busy thread on an 8-CPU host is `0.125`. A process counts from
//!   its second sample on (its first is the reference), so a restarted process is missing from one sample.
//! - `source: { processes: TARGET, metric: memory }`: their resident set sizes summed, over MemTotal.
//!
//! The selector is re-resolved every second (processes restart, and new ones match), with the blast-radius
//! policy faults use; a second in which nothing matches gives no sample rather than a 0. Resolving walks
//! `/proc`, which takes milliseconds on a busy host, so process samples are taken on a blocking thread; a
//! host sample reads three small `/proc` files and is taken on the runtime.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos_agent::AgentError;
use chaos_agent::process::{Count, Policy, ProcessSelector};
use chaos_agent::sample::{HostSample, ProcessSample, Sampler};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::experiment::HostMetric;
use crate::experiment::checked::ProcessMetric;
use crate::experiment::model;
use crate::slo::SaturationSample;

/// How often the host and processes are sampled.
const PERIOD: Duration = Duration::from_secs(1);

/// Shared with the run, which judges the samples once the pollers have stopped.
type Samples = Arc<Mutex<Vec<SaturationSample>>>;

/// Appends one sample of `metric` to `samples` every second until `stop`. A failed read skips that sample
/// (logged once): a saturation SLO with no samples is judged inconclusive, not passed.
pub async fn sample_host(metric: HostMetric, run_start: Instant, samples: Samples, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sampler = Sampler::new();
    let mut warned = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match host_value(metric, &sampler.sample_host()) {
            Ok(Some(value)) => push(&samples, run_start, value),
            // The first CPU sample only sets the reference point.
            Ok(None) => {}
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(metric = ?metric, error = %e, "host sampling failed");
            }
            Err(_) => {}
        }
    }
}

/// Appends one sample of `metric` over the processes `selector` matches to `samples` every second until
/// `stop`; `target` names them in logs. Seconds in which nothing matches (or, for CPU, no process has a
/// reference yet) give no sample; a selection the policy refuses is logged once and gives none either.
pub async fn sample_processes(
    target: String,
    selector: model::ProcessSelector,
    metric: ProcessMetric,
    run_start: Instant,
    samples: Samples,
    stop: CancellationToken,
) {
    let selector = Arc::new(super::plan::agent_selector(&selector));
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Moved to the blocking thread for each sample and back: one sampler keeps the CPU references.
    let mut sampler = Some(Sampler::new());
    let mut capacity: Option<Capacity> = None;
    let mut warned = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(mut owned) = sampler.take() else { return };
        let selector = selector.clone();
        let sampled = tokio::task::spawn_blocking(move || {
            let capacity = capacity.map_or_else(|| Capacity::of(&owned.sample_host()), Ok);
            let value =
                capacity.and_then(|c| sample_targets(&mut owned, &selector, metric, c).map(|v| (c, v)));
            (owned, value)
        })
        .await;
        let value = match sampled {
            Ok((owned, value)) => {
                sampler = Some(owned);
                value
            }
            Err(e) => {
                tracing::warn!(target = %target, error = %e, "process sampling stopped");
                return;
            }
        };
        match value {
            Ok((c, value)) => {
                capacity = Some(c);
                if let Some(value) = value {
                    push(&samples, run_start, value);
                }
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(target = %target, metric = ?metric, error = %e, "process sampling failed");
            }
            Err(_) => {}
        }
    }
}

/// Appends one sample of `metric` every second until `stop`, from the latest heartbeats of `agents` (through
/// the remote hosts, the controller's fleet): the highest value among them, so the SLO judges the most
/// saturated host. A second in which no agent has a value (disconnected, or its first CPU sample) gives no
/// sample.
pub async fn sample_agents(
    hosts: Arc<dyn super::RemoteHosts>,
    agents: Vec<String>,
    metric: HostMetric,
    run_start: Instant,
    samples: Samples,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let values = agents.iter().filter_map(|agent| hosts.sample(agent)).filter_map(|s| match metric {
            HostMetric::Cpu => s.cpu,
            HostMetric::Memory => Some(s.memory_used),
            HostMetric::Load => Some(s.load),
        });
        if let Some(max) = values.fold(None, |max: Option<f64>, v| Some(max.map_or(v, |m| m.max(v)))) {
            push(&samples, run_start, max);
        }
    }
}

fn push(samples: &Samples, run_start: Instant, value: f64) {
    if let Ok(mut samples) = samples.lock() {
        samples.push(SaturationSample { at: run_start.elapsed(), value });
    }
}

/// The value of `metric` in `host`: `None` while CPU has no reference yet; an error when the host could not
/// be read (no CPUs or no MemTotal).
fn host_value(metric: HostMetric, host: &HostSample) -> Result<Option<f64>, String> {
    match metric {
        HostMetric::Cpu => Ok(host.cpu),
        HostMetric::Memory if host.memory_total_bytes == 0 => Err("MemTotal could not be read".into()),
        HostMetric::Memory => Ok(Some(host.memory_used)),
        HostMetric::Load if host.cpus == 0 => Err("the number of CPUs could not be read".into()),
        HostMetric::Load => Ok(Some(host.load1 / host.cpus as f64)),
    }
}

/// What the processes' figures are divided by: read once per poller.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Capacity {
    cpus: usize,
    memory_bytes: u64,
}

impl Capacity {
    fn of(host: &HostSample) -> Result<Capacity, String> {
        if host.cpus == 0 || host.memory_total_bytes == 0 {
            let (cpus, bytes) = (host.cpus, host.memory_total_bytes);
            return Err(format!(
                "expected the host's CPUs and MemTotal, found {cpus} CPUs and {bytes} bytes"
            ));
        }
        Ok(Capacity { cpus: host.cpus, memory_bytes: host.memory_total_bytes })
    }
}

/// Resolves `selector` to every matching process and samples them. `Ok(None)` when nothing matches.
fn sample_targets(
    sampler: &mut Sampler,
    selector: &ProcessSelector,
    metric: ProcessMetric,
    capacity: Capacity,
) -> Result<Option<f64>, String> {
    // Every match, not a seeded choice among them: the seed does not matter when all are taken.
    match chaos_agent::process::select(selector, Count::Percent(1.0), 0, &Policy::default()) {
        Ok(ids) => Ok(processes_value(metric, &sampler.sample_processes(&ids), capacity)),
        Err(AgentError::NoMatch { .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The value of `metric` over `samples`: the live processes' CPU (those with a reference) summed over the
/// number of CPUs, or their RSS summed over MemTotal. `None` when no process counts.
fn processes_value(metric: ProcessMetric, samples: &[ProcessSample], capacity: Capacity) -> Option<f64> {
    let live = samples.iter().filter(|s| s.alive);
    match metric {
        ProcessMetric::Cpu => {
            let cpu: Vec<f64> = live.filter_map(|s| s.cpu).collect();
            (!cpu.is_empty()).then(|| cpu.iter().sum::<f64>() / capacity.cpus as f64)
        }
        ProcessMetric::Memory => {
            let rss: Vec<u64> = live.map(|s| s.rss_bytes).collect();
            (!rss.is_empty()).then(|| rss.iter().sum::<u64>() as f64 / capacity.memory_bytes as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command, Stdio};

    use chaos_agent::process::ProcessId;

    use super::*;

    fn host(cpu: Option<f64>, cpus: usize, load1: f64) -> HostSample {
        HostSample {
            cpu,
            memory_used: 0.75,
            memory_total_bytes: 16_000,
            memory_available_bytes: 4_000,
            load1,
            load5: 0.0,
            load15: 0.0,
            cpus,
        }
    }

    fn process(pid: i32, cpu: Option<f64>, rss_bytes: u64, alive: bool) -> ProcessSample {
        ProcessSample { id: ProcessId { pid, start_time: 1 }, cpu, rss_bytes, alive }
    }

    const CAPACITY: Capacity = Capacity { cpus: 4, memory_bytes: 1_000 };

    #[test]
    fn host_values_are_fractions_of_the_host_and_load_may_exceed_one() {
        let h = host(Some(0.3), 2, 5.0);
        assert_eq!(host_value(HostMetric::Cpu, &h), Ok(Some(0.3)));
        assert_eq!(host_value(HostMetric::Memory, &h), Ok(Some(0.75)));
        assert_eq!(host_value(HostMetric::Load, &h), Ok(Some(2.5)), "5 tasks on 2 CPUs is 250%");
    }

    #[test]
    fn the_first_cpu_sample_is_only_a_reference() {
        assert_eq!(host_value(HostMetric::Cpu, &host(None, 2, 0.0)), Ok(None));
    }

    #[test]
    fn an_unreadable_host_gives_an_error_not_a_zero() {
        assert!(host_value(HostMetric::Load, &host(Some(0.1), 0, 1.0)).is_err());
        let mut h = host(Some(0.1), 2, 1.0);
        h.memory_total_bytes = 0;
        assert!(host_value(HostMetric::Memory, &h).is_err());
        let e = Capacity::of(&h).unwrap_err();
        assert_eq!(e, "expected the host's CPUs and MemTotal, found 2 CPUs and 0 bytes");
    }

    #[test]
    fn process_cpu_is_summed_over_all_the_hosts_cpus() {
        // One core busy and a quarter of another, on 4 CPUs; the one without a reference and the dead one
        // do not count.
        let samples = [
            process(10, Some(1.0), 100, true),
            process(11, Some(0.25), 100, true),
            process(12, None, 100, true),
            process(13, None, 0, false),
        ];
        let cpu = processes_value(ProcessMetric::Cpu, &samples, CAPACITY).unwrap();
        assert!((cpu - 1.25 / 4.0).abs() < 1e-12, "{cpu}");
    }

    #[test]
    fn process_memory_is_the_summed_rss_over_memtotal() {
        let samples =
            [process(10, None, 100, true), process(11, None, 150, true), process(12, None, 0, false)];
        assert_eq!(processes_value(ProcessMetric::Memory, &samples, CAPACITY), Some(0.25));
    }

    #[test]
    fn no_live_process_or_no_cpu_reference_gives_no_sample() {
        assert_eq!(processes_value(ProcessMetric::Cpu, &[], CAPACITY), None);
        assert_eq!(processes_value(ProcessMetric::Memory, &[], CAPACITY), None);
        let first = [process(10, None, 100, true)];
        assert_eq!(processes_value(ProcessMetric::Cpu, &first, CAPACITY), None);
        let dead = [process(10, None, 0, false)];
        assert_eq!(processes_value(ProcessMetric::Memory, &dead, CAPACITY), None);
    }

    #[tokio::test(start_paused = true)]
    async fn samples_this_host_every_second_until_stopped() {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let start = Instant::now();
        let task = tokio::spawn(sample_host(HostMetric::Memory, start, samples.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(3500)).await;
        stop.cancel();
        task.await.unwrap();
        let samples = samples.lock().unwrap().clone();
        let at: Vec<Duration> = samples.iter().map(|s| s.at).collect();
        assert_eq!(at, [0, 1, 2, 3].map(Duration::from_secs), "{samples:?}");
        assert!(samples.iter().all(|s| s.value > 0.0 && s.value <= 1.0), "{samples:?}");
    }

    /// A child that does nothing for a while, killed on drop.
    struct Sleeper(Child);

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test]
    async fn samples_the_memory_of_the_matching_processes_and_nothing_once_they_are_gone() {
        let mut child = Sleeper(Command::new("sleep").arg("30").stdin(Stdio::null()).spawn().unwrap());
        let selector =
            model::ProcessSelector { pid: Some(child.0.id()), ..model::ProcessSelector::default() };
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(sample_processes(
            "sleeper".into(),
            selector,
            ProcessMetric::Memory,
            Instant::now(),
            samples.clone(),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let alive = samples.lock().unwrap().clone();
        assert_eq!(alive.len(), 2, "{alive:?}");
        assert!(alive.iter().all(|s| s.value > 0.0 && s.value < 0.5), "{alive:?}");
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        tokio::time::sleep(Duration::from_millis(2000)).await;
        stop.cancel();
        task.await.unwrap();
        let after = samples.lock().unwrap().clone();
        assert_eq!(after, alive, "no sample once nothing matches");
    }
}
