//! Signal collection for a run: the load generators, proxy and Prometheus pollers and saturation samplers the
//! SLOs need, one event log (or sample list) per SLO source, started before the baseline and stopped after
//! the recovery window. Tests may hand the engine ready-made logs instead ([`super::ExecuteOptions::signals`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Logs, MethodContext, ResolvedTarget, host, source_key, sources};
use crate::experiment::Checked;
use crate::experiment::SourceKind;
use crate::load::LoadGenerator;
use crate::signals::EventLog;
use crate::slo::SaturationSample;

/// Saturation samples per SLO source key.
pub type Samples = BTreeMap<String, Arc<Mutex<Vec<SaturationSample>>>>;

/// The signal collection of one run, running until [`Collection::stop`].
pub struct Collection {
    pub logs: Logs,
    pub saturation: Samples,
    stop: CancellationToken,
    generators: Vec<crate::load::LoadHandle>,
    pollers: Vec<JoinHandle<()>>,
}

impl Collection {
    /// Logs given by the caller: nothing is started (tests feed them).
    pub fn given(logs: Logs) -> Collection {
        Collection {
            logs,
            saturation: BTreeMap::new(),
            stop: CancellationToken::new(),
            generators: Vec::new(),
            pollers: Vec::new(),
        }
    }

    /// Starts every load generator and every poller and sampler an SLO names. A load that cannot start is the
    /// error (`load NAME: …`); what started is stopped first.
    pub fn start(exp: &Checked, ctx: &MethodContext) -> Result<Collection, String> {
        let run_start = ctx.run_start;
        let mut collection = Collection::given(BTreeMap::new());
        for load in &exp.load {
            let log = Arc::new(EventLog::default());
            collection.logs.insert(format!("load:{}", load.name), log.clone());
            match LoadGenerator::start(load, run_start, log, collection.stop.clone()) {
                Ok(handle) => collection.generators.push(handle),
                Err(e) => {
                    collection.stop.cancel();
                    return Err(format!("load {}: {e}", load.name));
                }
            }
        }
        collection.start_pollers(exp, ctx, run_start);
        collection.start_samplers(exp, ctx, run_start);
        Ok(collection)
    }

    /// Proxy stats and Prometheus queries, one poller per source.
    fn start_pollers(&mut self, exp: &Checked, ctx: &MethodContext, run_start: Instant) {
        for slo in &exp.slos {
            if let Some(proxy_target) = &slo.source.proxy {
                let key = format!("proxy:{proxy_target}");
                if self.logs.contains_key(&key) {
                    continue;
                }
                let log = Arc::new(EventLog::default());
                self.logs.insert(key, log.clone());
                if let Some(ResolvedTarget::Proxy { client, name, .. }) = ctx.plan.targets.get(proxy_target) {
                    // Every latency threshold judged on this proxy becomes a histogram bound (http proxies).
                    let thresholds: Vec<std::time::Duration> = exp
                        .slos
                        .iter()
                        .filter(|s| s.source.proxy.as_deref() == Some(proxy_target.as_str()))
                        .filter(|s| s.signal == crate::experiment::model::Signal::Latency)
                        .filter_map(|s| crate::slo::latency_target(s).ok().map(|(_, t)| t))
                        .collect();
                    self.pollers.push(tokio::spawn(sources::poll_proxy(
                        (**client).clone(),
                        name.clone(),
                        thresholds,
                        run_start,
                        log,
                        self.stop.clone(),
                    )));
                }
            }
            if let Some(source) = &slo.source.prometheus
                && !self.logs.contains_key(&source_key(slo))
            {
                let log = Arc::new(EventLog::default());
                self.logs.insert(source_key(slo), log.clone());
                let (source, stop) = (source.clone(), self.stop.clone());
                self.pollers.push(tokio::spawn(async move {
                    super::prometheus::poll_prometheus(&source, run_start, log, stop).await
                }));
            }
        }
    }

    /// Saturation: one sampler per host metric, and per process target and metric, the SLOs name; its
    /// samples are judged like events.
    fn start_samplers(&mut self, exp: &Checked, ctx: &MethodContext, run_start: Instant) {
        for slo in &exp.slos {
            let key = source_key(slo);
            if self.saturation.contains_key(&key) {
                continue;
            }
            let samples = Arc::new(Mutex::new(Vec::new()));
            let stop = self.stop.clone();
            let poller = match slo.source.kind() {
                Ok(SourceKind::Host(metric)) => {
                    tokio::spawn(host::sample_host(metric, run_start, samples.clone(), stop))
                }
                Ok(SourceKind::Agents { target, metric }) => {
                    let (Some(ResolvedTarget::Hosts { agents, .. }), Some(remote)) =
                        (ctx.plan.targets.get(target), &ctx.plan.remote)
                    else {
                        continue;
                    };
                    tokio::spawn(host::sample_agents(
                        remote.hosts.clone(),
                        agents.clone(),
                        metric,
                        run_start,
                        samples.clone(),
                        stop,
                    ))
                }
                Ok(SourceKind::Processes { target, metric }) => {
                    // Validation made it a process target; unresolved, the SLO has no samples (inconclusive).
                    let Some(ResolvedTarget::Processes { selector, .. }) = ctx.plan.targets.get(target)
                    else {
                        continue;
                    };
                    tokio::spawn(host::sample_processes(
                        target.to_string(),
                        selector.clone(),
                        metric,
                        run_start,
                        samples.clone(),
                        stop,
                    ))
                }
                _ => continue,
            };
            self.saturation.insert(key, samples);
            self.pollers.push(poller);
        }
    }

    /// Stops every generator and poller and waits for them; the logs and samples stay.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        for g in self.generators.drain(..) {
            let _ = g.stop().await;
        }
        for p in self.pollers.drain(..) {
            let _ = p.await;
        }
    }
}
