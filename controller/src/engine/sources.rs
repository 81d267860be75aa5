//! Signal sources the engine runs during an experiment besides the load generator: a proxy's live stats,
//! turned into events (each new connection is a good event, each failed upstream dial a bad one).

use std::sync::Arc;
use std::time::Duration;

use chaos_proxy::client::Client;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::signals::{Event, EventLog};

/// How often a proxy's stats are read.
const POLL: Duration = Duration::from_millis(200);

/// Polls `/proxies/{name}/stats` until `stop`, appending the counters' increments to `log`.
pub async fn poll_proxy(
    client: Client,
    proxy: String,
    run_start: Instant,
    log: Arc<EventLog>,
    stop: CancellationToken,
) {
    let mut last: Option<(u64, u64)> = None;
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(stats) = client.stats(&proxy).await else { continue };
        let total = stats["connections_total"].as_u64().unwrap_or(0);
        let failed = stats["upstream_connect_failures"].as_u64().unwrap_or(0);
        if let Some((last_total, last_failed)) = last {
            let at = run_start.elapsed();
            for _ in 0..total.saturating_sub(last_total) {
                log.push(Event { at, latency: Duration::ZERO, ok: true });
            }
            for _ in 0..failed.saturating_sub(last_failed) {
                log.push(Event { at, latency: Duration::ZERO, ok: false });
            }
        }
        last = Some((total, failed));
    }
}
