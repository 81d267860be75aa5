//! Small request/response round trip: a 64-byte ping echoed back, closed loop per connection.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::backend::{self, MODE_ECHO};
use crate::profile::Profile;
use crate::stats::Summary;
use crate::targets::{TargetKind, Targets};

/// Ping size in bytes.
pub const PING: usize = 64;
/// Bound on a single round trip before the measurement is declared broken.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

/// One round-trip measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub target: TargetKind,
    pub conns: usize,
    pub summary: Result<Summary, String>,
}

/// Shape of one round-trip measurement.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub conns: usize,
    /// Discarded round trips at the start of each connection.
    pub warmup: usize,
    /// Recorded round trips per connection (at most).
    pub samples: usize,
    /// Minimum time between the starts of two round trips of one connection (`None`: back to back).
    pub period: Option<Duration>,
    /// Hard bound on the whole measurement; fewer samples are recorded if it is reached.
    pub time_limit: Duration,
}

/// Measures every started target at every connection count of the profile. The samples are split over
/// interleaved rounds (rotating order), pooled per target, then summarised.
pub async fn run(targets: &mut Targets, kinds: &[TargetKind], profile: &Profile) -> Vec<Row> {
    let mut rows = Vec::new();
    let rounds = profile.rounds.max(1);
    for &conns in &profile.conns {
        let samples = if conns == 1 { profile.rtt_samples_single } else { profile.rtt_samples_multi };
        let plan = Plan {
            conns,
            warmup: profile.rtt_warmup,
            samples: 0, // set per round below
            period: None,
            time_limit: profile.rtt_time_limit / rounds as u32,
        };
        let present: Vec<TargetKind> = kinds.iter().copied().filter(|k| targets.addr(*k).is_some()).collect();
        let mut pooled: Vec<(TargetKind, Result<Vec<Duration>, String>)> =
            present.iter().map(|k| (*k, Ok(Vec::new()))).collect();
        for round in 0..rounds {
            // Split the samples exactly over the rounds.
            let plan = Plan { samples: samples / rounds + usize::from(round < samples % rounds), ..plan };
            let mut order: Vec<usize> = (0..pooled.len()).collect();
            order.rotate_left(round % pooled.len().max(1));
            for i in order {
                let (kind, acc) = &mut pooled[i];
                let Ok(acc) = acc else { continue };
                let Some(addr) = targets.addr(*kind) else { continue };
                eprintln!("round trip: {kind}, {conns} conn(s), round {}/{rounds}", round + 1);
                let result = measure(addr, plan).await.and_then(|v| targets.check_chaos_alive().map(|()| v));
                match result {
                    Ok(v) => acc.extend(v),
                    Err(e) => {
                        eprintln!("  error: {e:#}");
                        pooled[i].1 = Err(format!("{e:#}"));
                    }
                }
                targets.backend.settle().await;
            }
        }
        for (target, result) in pooled {
            let summary = result.and_then(|mut v| {
                Summary::from_samples(&mut v).ok_or_else(|| "no round trip completed in time".to_string())
            });
            rows.push(Row { target, conns, summary });
        }
    }
    rows
}

/// Runs `plan` against `addr` and returns every recorded round-trip time.
pub async fn measure(addr: SocketAddr, plan: Plan) -> Result<Vec<Duration>> {
    let mut streams = Vec::with_capacity(plan.conns);
    for _ in 0..plan.conns {
        let mut s = backend::connect(addr).await?;
        s.write_all(&[MODE_ECHO]).await.context("send echo mode")?;
        streams.push(s);
    }
    let deadline = Instant::now() + plan.time_limit;
    let mut set = JoinSet::new();
    for (conn, mut s) in streams.into_iter().enumerate() {
        set.spawn(async move {
            let mut out = [0u8; PING];
            let mut back = [0u8; PING];
            let mut recorded = Vec::with_capacity(plan.samples);
            if let Some(period) = plan.period {
                // Paced connections start spread over one period, so that they do not ping in bursts.
                let offset = period.mul_f64(conn as f64 / plan.conns as f64);
                tokio::time::sleep_until((Instant::now() + offset).min(deadline)).await;
            }
            for i in 0..plan.warmup + plan.samples {
                let begin = Instant::now();
                if begin >= deadline {
                    break;
                }
                out.iter_mut().enumerate().for_each(|(j, b)| *b = (conn + i + j) as u8);
                let trip = async {
                    s.write_all(&out).await?;
                    s.read_exact(&mut back).await?;
                    Ok::<(), std::io::Error>(())
                };
                tokio::time::timeout(ROUND_TRIP_TIMEOUT, trip)
                    .await
                    .with_context(|| format!("no echo within {ROUND_TRIP_TIMEOUT:?} (round trip {i})"))?
                    .with_context(|| format!("round trip {i}"))?;
                let took = begin.elapsed();
                if back != out {
                    bail!("echo corrupted on round trip {i}");
                }
                if i >= plan.warmup {
                    recorded.push(took);
                }
                if let Some(period) = plan.period {
                    tokio::time::sleep_until((begin + period).min(deadline)).await;
                }
            }
            Ok::<Vec<Duration>, anyhow::Error>(recorded)
        });
    }
    let mut all = Vec::with_capacity(plan.conns * plan.samples);
    while let Some(joined) = set.join_next().await {
        all.extend(joined.context("round-trip task")??);
    }
    Ok(all)
}
