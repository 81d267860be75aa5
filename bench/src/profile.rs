//! How long and how big each benchmark runs: the full profile and the reduced `--quick` one.

use std::time::Duration;

use serde::Serialize;

/// Sizes and time bounds of every benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub name: &'static str,
    /// Connection counts for throughput and round-trip benchmarks.
    pub conns: [usize; 2],
    /// Throughput and round trip: targets are measured in this many interleaved rounds.
    pub rounds: usize,
    /// Throughput: time streams run before bytes are counted, then the counting window (per round).
    #[serde(serialize_with = "secs")]
    pub tput_warmup: Duration,
    #[serde(serialize_with = "secs")]
    pub tput_window: Duration,
    /// Round trip: samples per connection at 1 and at many connections, over all rounds (each round first
    /// discards `rtt_warmup`).
    pub rtt_samples_single: usize,
    pub rtt_samples_multi: usize,
    pub rtt_warmup: usize,
    /// Round trip: hard time bound of one target at one connection count (split over the rounds).
    #[serde(serialize_with = "secs")]
    pub rtt_time_limit: Duration,
    /// Latency toxic: concurrent connections, and round trips per connection (one per 100 ms).
    pub latency_conns: usize,
    pub latency_rounds: usize,
    /// Bandwidth toxic: seconds of data per rate, and a cap on bytes per rate.
    pub bw_seconds: f64,
    pub bw_max_bytes: u64,
    /// Memory: idle connections to open.
    pub mem_conns: usize,
    /// `chaos run` vs Chaos Toolkit: discarded warm-up rounds, then measured rounds (each round runs every
    /// command once, interleaved).
    pub run_warmup: usize,
    pub run_runs: usize,
    /// SLO tick layouts: (sources the 10k events/s are split over, seconds of method before the measured
    /// tick, ticks measured).
    pub slo_layouts: Vec<(usize, u64, usize)>,
    /// HTTP keep-alive: rounds (every case once per round, interleaved; the median round is reported), and
    /// each wrk run's warm-up and measured duration.
    pub http_rounds: usize,
    #[serde(serialize_with = "secs")]
    pub http_warmup: Duration,
    #[serde(serialize_with = "secs")]
    pub http_duration: Duration,
}

impl Profile {
    /// Full run: about 2 minutes on 2 cores.
    pub fn full() -> Self {
        Self {
            name: "full",
            conns: [1, 100],
            rounds: 3,
            tput_warmup: Duration::from_millis(200),
            tput_window: Duration::from_secs(1),
            rtt_samples_single: 20_000,
            rtt_samples_multi: 300,
            rtt_warmup: 50,
            rtt_time_limit: Duration::from_secs(6),
            latency_conns: 20,
            latency_rounds: 20,
            bw_seconds: 2.0,
            bw_max_bytes: 256_000_000,
            mem_conns: 10_000,
            run_warmup: 3,
            run_runs: 20,
            slo_layouts: vec![(10, 10, 100), (1, 10, 20), (1, 60, 3)],
            http_rounds: 3,
            http_warmup: Duration::from_secs(1),
            http_duration: Duration::from_secs(5),
        }
    }

    /// `--quick`: under a minute.
    pub fn quick() -> Self {
        Self {
            name: "quick",
            conns: [1, 100],
            rounds: 1,
            tput_warmup: Duration::from_millis(150),
            tput_window: Duration::from_millis(600),
            rtt_samples_single: 3_000,
            rtt_samples_multi: 60,
            rtt_warmup: 10,
            rtt_time_limit: Duration::from_secs(1),
            latency_conns: 10,
            latency_rounds: 8,
            bw_seconds: 0.6,
            bw_max_bytes: 64_000_000,
            mem_conns: 10_000,
            run_warmup: 1,
            run_runs: 5,
            slo_layouts: vec![(10, 10, 20), (1, 10, 5)],
            http_rounds: 1,
            http_warmup: Duration::from_secs(1),
            http_duration: Duration::from_secs(2),
        }
    }
}

/// Serialises a duration as seconds (JSON report).
fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
