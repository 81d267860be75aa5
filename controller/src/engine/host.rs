//! The host saturation source (`source: { host: cpu | memory }`): this host's CPU or memory utilisation,
//! sampled once a second from `/proc` into the [`SaturationSample`]s a saturation SLO is judged on.
//!
//! CPU is the busy share of all jiffies between two reads of `/proc/stat`'s aggregate `cpu` line (so the first
//! sample comes one second after the sampler starts); memory is `1 − MemAvailable/MemTotal` from
//! `/proc/meminfo`, the kernel's own estimate of what could be allocated without swapping. Parsing `/proc`
//! directly is what `sysinfo` does on Linux; for two numbers it is not worth a dependency.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::experiment::HostMetric;
use crate::slo::SaturationSample;

/// How often the host is sampled.
const PERIOD: Duration = Duration::from_secs(1);

/// Appends one sample of `metric` to `samples` every second until `stop`. A read or parse failure skips that
/// sample (logged once): a saturation SLO with no samples is judged inconclusive, not passed.
pub async fn sample_host(
    metric: HostMetric,
    run_start: Instant,
    samples: Arc<Mutex<Vec<SaturationSample>>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_cpu: Option<CpuTimes> = None;
    let mut warned = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let value = match metric {
            HostMetric::Cpu => read("/proc/stat").and_then(|text| {
                let now = cpu_times(&text).ok_or("no aggregate cpu line in /proc/stat")?;
                let share = last_cpu.and_then(|last| cpu_utilisation(last, now));
                last_cpu = Some(now);
                Ok(share)
            }),
            HostMetric::Memory => read("/proc/meminfo").and_then(|text| {
                memory_used(&text).map(Some).ok_or("no MemTotal/MemAvailable in /proc/meminfo".into())
            }),
        };
        match value {
            Ok(Some(value)) => {
                if let Ok(mut samples) = samples.lock() {
                    samples.push(SaturationSample { at: run_start.elapsed(), value });
                }
            }
            // The first CPU read only sets the reference point.
            Ok(None) => {}
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(metric = ?metric, error = %e, "host sampling failed");
            }
            Err(_) => {}
        }
    }
}

fn read(path: &str) -> Result<String, String> {
    // A /proc read is a few microseconds of kernel formatting, never a disk wait: fine on the runtime.
    std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))
}

/// Cumulative jiffies of all CPUs, from the aggregate `cpu` line of `/proc/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CpuTimes {
    /// Jiffies not spent idle or waiting for I/O.
    busy: u64,
    /// All jiffies: user, nice, system, idle, iowait, irq, softirq, steal.
    total: u64,
}

/// Parses the aggregate `cpu` line. `guest` and `guest_nice` are left out: the kernel already counts them in
/// `user` and `nice`. Kernels older than 2.6.33 print fewer columns; the missing ones count as zero.
fn cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.split_whitespace().next() == Some("cpu"))?;
    let fields: Vec<u64> =
        line.split_whitespace().skip(1).take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
    if fields.len() < 4 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes { busy: total.saturating_sub(idle), total })
}

/// The busy share between two reads, in 0..=1; `None` when no time passed (or the counters went back).
fn cpu_utilisation(before: CpuTimes, after: CpuTimes) -> Option<f64> {
    let total = after.total.checked_sub(before.total).filter(|t| *t > 0)?;
    let busy = after.busy.saturating_sub(before.busy);
    Some((busy as f64 / total as f64).clamp(0.0, 1.0))
}

/// `1 − MemAvailable/MemTotal` from `/proc/meminfo`, in 0..=1.
fn memory_used(meminfo: &str) -> Option<f64> {
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.split(':').next() == Some(name))?;
        line.split(':').nth(1)?.split_whitespace().next()?.parse().ok()
    };
    let total = field("MemTotal").filter(|t| *t > 0)?;
    let available = field("MemAvailable")?;
    Some((1.0 - available as f64 / total as f64).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_1: &str = "\
cpu  4705 356 584 3699 23 0 23 5 7 3
cpu0 1393 280 213 1859 10 0 12 2 3 1
cpu1 3312 76 371 1840 13 0 11 3 4 2
intr 114930548 113199788 3 0 5 263 0 4 0 1 0 0 0 0 0 0 0 0
ctxt 1990473
btime 1062191376
";

    const STAT_2: &str = "\
cpu  4905 356 684 3799 23 0 23 5 207 3
cpu0 1493 280 263 1909 10 0 12 2 103 1
cpu1 3412 76 421 1890 13 0 11 3 104 2
";

    const MEMINFO: &str = "\
MemTotal:       16000000 kB
MemFree:         2000000 kB
MemAvailable:    4000000 kB
Buffers:          500000 kB
Cached:          3000000 kB
SwapTotal:       2097148 kB
";

    #[test]
    fn cpu_line_sums_the_first_eight_columns_and_leaves_guest_time_out() {
        let t = cpu_times(STAT_1).unwrap();
        assert_eq!(t.total, 4705 + 356 + 584 + 3699 + 23 + 23 + 5);
        assert_eq!(t.busy, t.total - 3699 - 23, "idle and iowait are not busy");
    }

    #[test]
    fn cpu_utilisation_is_the_busy_share_of_the_delta() {
        // Between the two reads: user +200, system +100, idle +100, guest +200 (already inside user).
        let u = cpu_utilisation(cpu_times(STAT_1).unwrap(), cpu_times(STAT_2).unwrap()).unwrap();
        assert!((u - 300.0 / 400.0).abs() < 1e-9, "{u}");
    }

    #[test]
    fn no_elapsed_time_or_counters_going_back_give_no_sample() {
        let t = cpu_times(STAT_1).unwrap();
        assert_eq!(cpu_utilisation(t, t), None);
        assert_eq!(cpu_utilisation(cpu_times(STAT_2).unwrap(), t), None);
    }

    #[test]
    fn old_kernels_with_four_cpu_columns_still_parse() {
        let t = cpu_times("cpu 10 0 10 80\n").unwrap();
        assert_eq!(t, CpuTimes { busy: 20, total: 100 });
    }

    #[test]
    fn a_stat_without_the_aggregate_line_is_refused() {
        assert_eq!(cpu_times("cpu0 1 2 3 4\n"), None);
        assert_eq!(cpu_times("cpu 1 2 x 4\n"), None);
        assert_eq!(cpu_times("cpu 1 2\n"), None);
    }

    #[test]
    fn memory_used_is_one_minus_available_over_total() {
        let m = memory_used(MEMINFO).unwrap();
        assert!((m - 0.75).abs() < 1e-9, "{m}");
    }

    #[test]
    fn meminfo_without_available_or_total_is_refused() {
        assert_eq!(memory_used("MemTotal: 100 kB\nMemFree: 50 kB\n"), None);
        assert_eq!(memory_used("MemTotal: 0 kB\nMemAvailable: 0 kB\n"), None);
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
        assert!(samples.iter().all(|s| (0.0..=1.0).contains(&s.value)), "{samples:?}");
    }
}
