//! Toxic accuracy through `chaos proxy`: a 100 ms downstream latency toxic and the bandwidth toxic from
//! 10 KB/s to 100 MB/s, each added and removed through the admin API.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::backend::{self, generate_request};
use crate::profile::Profile;
use crate::rtt::{self, Plan};
use crate::stats::Summary;
use crate::targets::{CHAOS_PROXY, TargetKind, Targets};

/// Injected latency, ms.
pub const LATENCY_MS: u64 = 100;
/// Bandwidth rates tried, KB/s (KB = 1000 bytes).
pub const RATES_KBPS: [u64; 5] = [10, 100, 1_000, 10_000, 100_000];

/// Latency-toxic result: the toxic run and the direct baseline run with the same pacing.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyResult {
    pub direct: Summary,
    pub toxic: Summary,
}

impl LatencyResult {
    /// Measured added latency minus the injected one, ms, at p50.
    pub fn p50_error_ms(&self) -> f64 {
        (self.toxic.p50_us - self.direct.p50_us) / 1000.0 - LATENCY_MS as f64
    }

    /// Same at p99.
    pub fn p99_error_ms(&self) -> f64 {
        (self.toxic.p99_us - self.direct.p99_us) / 1000.0 - LATENCY_MS as f64
    }
}

/// One bandwidth-toxic measurement.
#[derive(Debug, Clone, Serialize)]
pub struct BandwidthRow {
    pub rate_kbps: u64,
    pub bytes: u64,
    /// Request sent → last byte received, seconds; and the achieved KB/s.
    pub measured: Result<(f64, f64), String>,
}

impl BandwidthRow {
    /// Achieved rate vs configured, percent.
    pub fn error_pct(&self) -> Option<f64> {
        self.measured.as_ref().ok().map(|(_, kbps)| (kbps / self.rate_kbps as f64 - 1.0) * 100.0)
    }
}

/// Latency toxic: `latency_conns` connections each doing one ping per 100 ms, direct then through chaos with
/// the toxic; the difference of the two distributions is compared with the injected 100 ms.
pub async fn latency(targets: &mut Targets, profile: &Profile) -> Result<LatencyResult> {
    let period = Duration::from_millis(LATENCY_MS);
    let plan = Plan {
        conns: profile.latency_conns,
        warmup: 1,
        samples: profile.latency_rounds,
        period: Some(period),
        time_limit: period * (profile.latency_rounds as u32 + 1) * 3 / 2 + Duration::from_secs(1),
    };
    eprintln!("latency toxic: direct baseline ({} conns x {} pings, 1 per 100 ms)", plan.conns, plan.samples);
    let mut direct = rtt::measure(targets.backend.addr(), plan).await?;
    let direct = Summary::from_samples(&mut direct).context("no direct round trip")?;
    targets.backend.settle().await;

    let chaos_addr = targets.addr(TargetKind::Chaos).context("latency toxic needs the chaos target")?;
    let toxic = json!({
        "name": "bench_latency",
        "type": "latency",
        "stream": "downstream",
        "attributes": {"latency": LATENCY_MS, "jitter": 0}
    });
    targets.chaos()?.add_toxic(CHAOS_PROXY, &toxic).await?;
    eprintln!("latency toxic: through chaos with latency {LATENCY_MS} ms downstream");
    let measured = rtt::measure(chaos_addr, plan).await;
    let removed = targets.chaos()?.delete_toxic(CHAOS_PROXY, "bench_latency").await;
    targets.backend.settle().await;
    targets.check_chaos_alive()?;
    let mut measured = measured?;
    removed?;
    let toxic = Summary::from_samples(&mut measured).context("no round trip through the latency toxic")?;
    Ok(LatencyResult { direct, toxic })
}

/// Bandwidth toxic at each rate: the backend sends ~`bw_seconds` worth of data through chaos; the achieved
/// rate is measured at the client.
pub async fn bandwidth(targets: &mut Targets, profile: &Profile) -> Result<Vec<BandwidthRow>> {
    let chaos_addr = targets.addr(TargetKind::Chaos).context("bandwidth toxic needs the chaos target")?;
    let mut rows = Vec::new();
    for rate in RATES_KBPS {
        let bytes = ((rate as f64 * 1000.0 * profile.bw_seconds) as u64).min(profile.bw_max_bytes);
        let name = format!("bench_bandwidth_{rate}");
        let toxic = json!({"name": name, "type": "bandwidth", "attributes": {"rate": rate}});
        eprintln!("bandwidth toxic: rate {rate} KB/s, {bytes} bytes");
        let measured = match targets.chaos()?.add_toxic(CHAOS_PROXY, &toxic).await {
            Ok(()) => {
                let expected = Duration::from_secs_f64(bytes as f64 / (rate as f64 * 1000.0));
                let m = receive(chaos_addr, bytes, expected * 3 + Duration::from_secs(3)).await;
                let removed = targets.chaos()?.delete_toxic(CHAOS_PROXY, &name).await;
                m.and_then(|m| removed.map(|()| m))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &measured {
            eprintln!("  error: {e:#}");
        }
        targets.backend.settle().await;
        targets.check_chaos_alive()?;
        rows.push(BandwidthRow { rate_kbps: rate, bytes, measured: measured.map_err(|e| format!("{e:#}")) });
    }
    Ok(rows)
}

/// Asks for `bytes` through `addr` and times request → last byte; returns (seconds, KB/s).
async fn receive(addr: SocketAddr, bytes: u64, limit: Duration) -> Result<(f64, f64)> {
    let mut s = backend::connect(addr).await?;
    let begin = Instant::now();
    let deadline = begin + limit;
    s.write_all(&generate_request(bytes)).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut got: u64 = 0;
    while got < bytes {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => bail!("only {got} of {bytes} bytes within {limit:?}"),
            Ok(Ok(0)) => bail!("closed after {got} of {bytes} bytes"),
            Ok(Ok(n)) => got += n as u64,
            Ok(Err(e)) => return Err(e).context("read"),
        }
    }
    let secs = begin.elapsed().as_secs_f64();
    Ok((secs, bytes as f64 / secs / 1000.0))
}
