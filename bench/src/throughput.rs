//! L4 bulk throughput, no toxics: backend → client streaming over N connections, counted at the receiver.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::backend::{self, generate_request};
use crate::profile::Profile;
use crate::targets::{TargetKind, Targets};

/// Client read buffer per connection.
const READ_BUF: usize = 64 * 1024;

/// One throughput measurement: a target at a connection count, over interleaved rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub target: TargetKind,
    pub conns: usize,
    /// MB/s of each round (MB = 10^6 bytes).
    pub rounds: Vec<f64>,
    /// Median over the rounds, or the error that stopped the measurement.
    pub mb_per_s: Result<f64, String>,
}

/// Measures every started target at every connection count of the profile. Targets are interleaved round
/// by round (in a rotating order) so that a change in background load hits all of them alike.
pub async fn run(targets: &mut Targets, kinds: &[TargetKind], profile: &Profile) -> Vec<Row> {
    let mut rows = Vec::new();
    for &conns in &profile.conns {
        let present: Vec<TargetKind> = kinds.iter().copied().filter(|k| targets.addr(*k).is_some()).collect();
        let mut values: Vec<(TargetKind, Result<Vec<f64>, String>)> =
            present.iter().map(|k| (*k, Ok(Vec::new()))).collect();
        for round in 0..profile.rounds {
            let mut order: Vec<usize> = (0..values.len()).collect();
            order.rotate_left(round % values.len().max(1));
            for i in order {
                let (kind, acc) = &mut values[i];
                let Ok(acc) = acc else { continue };
                let Some(addr) = targets.addr(*kind) else { continue };
                eprintln!("throughput: {kind}, {conns} conn(s), round {}/{}", round + 1, profile.rounds);
                let result = measure(addr, conns, profile.tput_warmup, profile.tput_window)
                    .await
                    .and_then(|v| targets.check_chaos_alive().map(|()| v));
                match result {
                    Ok(v) => acc.push(v),
                    Err(e) => {
                        eprintln!("  error: {e:#}");
                        values[i].1 = Err(format!("{e:#}"));
                    }
                }
                targets.backend.settle().await;
            }
        }
        for (target, result) in values {
            let (rounds, mb_per_s) = match result {
                Ok(v) => (v.clone(), median(v).ok_or_else(|| "no round completed".to_string())),
                Err(e) => (Vec::new(), Err(e)),
            };
            rows.push(Row { target, conns, rounds, mb_per_s });
        }
    }
    rows
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Opens `conns` streams through `addr`, lets them run for `warmup`, then counts bytes for `window`.
pub async fn measure(addr: SocketAddr, conns: usize, warmup: Duration, window: Duration) -> Result<f64> {
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        let mut s = backend::connect(addr).await?;
        s.write_all(&generate_request(u64::MAX)).await.context("send generate request")?;
        streams.push(s);
    }
    let start = Instant::now() + warmup;
    let end = start + window;
    let mut set = JoinSet::new();
    for mut s in streams {
        set.spawn(async move {
            let mut buf = vec![0u8; READ_BUF];
            let mut counted: u64 = 0;
            loop {
                match tokio::time::timeout_at(end, s.read(&mut buf)).await {
                    Err(_) => return Ok(counted),
                    Ok(Ok(0)) => bail!("stream closed by the proxy after {counted} counted bytes"),
                    Ok(Ok(n)) => {
                        if Instant::now() >= start {
                            counted += n as u64;
                        }
                    }
                    Ok(Err(e)) => return Err(e).context("read"),
                }
            }
        });
    }
    let mut total: u64 = 0;
    while let Some(joined) = set.join_next().await {
        total += joined.context("reader task")??;
    }
    Ok(total as f64 / window.as_secs_f64() / 1e6)
}
