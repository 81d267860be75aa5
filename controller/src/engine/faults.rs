//! The faults in force and how each is undone: [`Active`], the live kinds (toxics, a proxy taken down, host
//! faults through the local agent, faults on other hosts), each an [`ActiveFault`]. Every fault carries its
//! own deadline where it is applied: proxy toxics get a TTL on the proxy (the proxy removes them even if this
//! runner dies), host faults (pause, stress, network) a lease in the agent library plus an undo record that the
//! next start replays. Reverts are idempotent and run in reverse order on every exit path.

use std::sync::Arc;
use std::time::Duration;

use chaos_proxy_api::client::{Client, NewToxic, ProxyUpdate, Stream};
use serde_json::{Map, Value};

use super::error::FaultError;
use super::remote::{BoxFuture, RemoteHosts, Reverted};

/// A fault in force, as the engine sees it: what it is, whether it is known gone, how to undo it.
pub trait ActiveFault: Send + Sync {
    /// What the fault is, for the journal.
    fn describe(&self) -> String;

    /// Why the fault is known to be gone already, if it is (checked while its step runs, so the progress says
    /// so when it happens).
    fn lost_now(&self) -> Option<String>;

    /// Undoes the fault, or says it was already gone before its planned end ([`Reverted::Lost`]). Idempotent.
    fn revert(&self) -> BoxFuture<'_, Result<Reverted, FaultError>>;
}

/// A fault in force, with what it takes to undo it.
pub enum Active {
    /// A toxic on a proxy; reverted by removing it (its TTL removes it anyway).
    Toxic { client: Client, proxy: String, toxic: String, deadline: bool },
    /// A disabled proxy; reverted by enabling it (its TTL does that anyway).
    Down { client: Client, proxy: String },
    /// A fault the local agent applied (a pause, a stress, a network rule), journaled before it was applied;
    /// reverted through the agent (its lease does that anyway, and a later start replays the journal).
    Host { agent: chaos_agent::host::HostAgent, id: chaos_agent::faults::FaultId, description: String },
    /// Faults on other hosts, one per agent, applied through the remote hosts (the controller's fleet) with
    /// leases they renew; reverted through them (the agents' leases do that anyway once renewals stop).
    Remote { hosts: Arc<dyn RemoteHosts>, faults: Vec<(String, String)>, description: String },
}

// === impl Active ===

impl ActiveFault for Active {
    fn describe(&self) -> String {
        match self {
            Active::Toxic { proxy, toxic, deadline: true, .. } => format!("toxic {toxic} on proxy {proxy}"),
            Active::Toxic { proxy, toxic, deadline: false, .. } => {
                format!("toxic {toxic} on proxy {proxy} (no deadline: the proxy ignores ttl)")
            }
            Active::Down { proxy, .. } => format!("proxy {proxy} down"),
            Active::Host { id, description, .. } => format!("{description} ({id})"),
            Active::Remote { description, .. } => description.clone(),
        }
    }

    /// Only host and remote faults can tell.
    fn lost_now(&self) -> Option<String> {
        match self {
            Active::Host { agent, id, .. } => {
                (!agent.active().iter().any(|a| a.id == id.to_string())).then(|| {
                    "the local agent no longer holds it (its lease fired early or something else reverted it)"
                        .into()
                })
            }
            Active::Remote { hosts, faults, .. } => {
                let lost: Vec<String> = faults
                    .iter()
                    .filter_map(|(agent, fault_id)| {
                        hosts.lost_reason(fault_id).map(|why| format!("on {agent}: {why}"))
                    })
                    .collect();
                (!lost.is_empty()).then(|| lost.join("; "))
            }
            Active::Toxic { .. } | Active::Down { .. } => None,
        }
    }

    /// A host fault whose lease fired early, a remote fault that expired or whose agent went away, is lost. A
    /// toxic already gone (expired, removed by hand) is not an error.
    fn revert(&self) -> BoxFuture<'_, Result<Reverted, FaultError>> {
        Box::pin(self.revert_now())
    }
}

impl Active {
    async fn revert_now(&self) -> Result<Reverted, FaultError> {
        match self {
            Active::Toxic { client, proxy, toxic, .. } => match client.remove_toxic(proxy, toxic).await {
                Ok(()) => Ok(Reverted::Done),
                Err(e) if e.is_not_found() => Ok(Reverted::Done),
                Err(e) => Err(FaultError::proxy(format!("removing toxic {toxic} from proxy {proxy}"), e)),
            },
            Active::Down { client, proxy } => {
                let update = ProxyUpdate { enabled: Some(true), ..Default::default() };
                match client.update_proxy(proxy, &update).await {
                    Ok(_) => Ok(Reverted::Done),
                    Err(e) => Err(FaultError::proxy(format!("re-enabling proxy {proxy}"), e)),
                }
            }
            // Signals, reaping workers, `nft`/`tc`: blocking work, off the async threads.
            Active::Host { agent, id, description } => {
                let (agent, id) = (agent.clone(), *id);
                let reverted = tokio::task::spawn_blocking(move || {
                    // The engine reverts before the lease (duration + margin) is due: a fault the agent no
                    // longer holds was ended early, by its lease or by someone else.
                    if !agent.active().iter().any(|a| a.id == id.to_string()) {
                        return Ok(Reverted::Lost(
                            "the local agent no longer held it (its lease fired early or something else \
                             reverted it)"
                                .into(),
                        ));
                    }
                    agent.revert(id).map(|()| Reverted::Done)
                });
                let failed = |source| FaultError::Revert {
                    description: description.clone(),
                    source: Box::new(source),
                };
                match reverted.await {
                    Ok(Ok(reverted)) => Ok(reverted),
                    Ok(Err(e)) => Err(failed(FaultError::agent(e))),
                    Err(e) => Err(failed(FaultError::Task { what: "revert", detail: e.to_string() })),
                }
            }
            Active::Remote { hosts, faults, .. } => {
                let mut reverts = tokio::task::JoinSet::new();
                for (agent, fault_id) in faults {
                    let (hosts, agent, fault_id) = (hosts.clone(), agent.clone(), fault_id.clone());
                    reverts.spawn(async move {
                        let result = hosts.revert(&fault_id).await;
                        (agent, result)
                    });
                }
                let (mut errors, mut lost) = (Vec::new(), Vec::new());
                for (agent, result) in reverts.join_all().await {
                    match result {
                        Ok(Reverted::Done) => {}
                        Ok(Reverted::Lost(why)) => lost.push(format!("on {agent}: {why}")),
                        Err(e) => errors.push(e),
                    }
                }
                errors.sort_by(|a, b| a.0.cmp(&b.0));
                lost.sort();
                if !errors.is_empty() {
                    // The remote hosts' messages name their agent already.
                    Err(FaultError::Remote(errors))
                } else if !lost.is_empty() {
                    Ok(Reverted::Lost(lost.join("; ")))
                } else {
                    Ok(Reverted::Done)
                }
            }
        }
    }
}

/// What a toxic is named on its proxy: after the step (so humans can tell whose it is), its type and the run
/// (so two runs of the same experiment against one shared proxy never collide).
pub fn toxic_name(step_name: &str, toxic_type: &str, run_id: &str) -> String {
    format!("chaos-{}-{toxic_type}-{}", sanitize(step_name), sanitize(run_id))
}

/// Adds a toxic for a `fault:` step on a proxy target, named by [`toxic_name`], with a TTL of the step's
/// duration plus `margin`: the proxy removes it even if this runner dies.
pub async fn add_toxic(
    client: &Client,
    proxy: &str,
    name: String,
    toxic: ToxicFault<'_>,
    duration: Duration,
    margin: Duration,
) -> Result<Active, FaultError> {
    let new = NewToxic {
        name: Some(name.clone()),
        r#type: toxic.toxic_type.to_string(),
        stream: Some(toxic.stream),
        toxicity: Some(toxic.toxicity),
        attributes: toxic.attributes.clone(),
        ttl: Some(millis(duration + margin)),
    };
    let added = client
        .add_toxic(proxy, &new)
        .await
        .map_err(|e| FaultError::proxy(format!("adding {} toxic to proxy {proxy}", toxic.toxic_type), e))?;
    // A server that echoes no `ttl` (a real Toxiproxy ignores it) enforces no deadline: this runner's revert
    // is then the only one, and the journal says so.
    let deadline = added.ttl.is_some();
    if !deadline {
        tracing::warn!(proxy, toxic = %name, "the proxy API ignored the toxic's ttl: no deadline on the proxy side");
    }
    Ok(Active::Toxic { client: client.clone(), proxy: proxy.to_string(), toxic: name, deadline })
}

/// What a toxic fault step asks for (the experiment's checked fault parameters).
pub struct ToxicFault<'a> {
    pub toxic_type: &'a str,
    pub stream: Stream,
    pub toxicity: f32,
    pub attributes: &'a Map<String, Value>,
}

/// Takes a proxy down (listener and connections closed) with a TTL of `duration` plus `margin`, after which
/// the proxy re-enables itself.
pub async fn take_down(
    client: &Client,
    proxy: &str,
    duration: Duration,
    margin: Duration,
) -> Result<Active, FaultError> {
    let update =
        ProxyUpdate { enabled: Some(false), ttl: Some(millis(duration + margin)), ..Default::default() };
    client
        .update_proxy(proxy, &update)
        .await
        .map_err(|e| FaultError::proxy(format!("taking proxy {proxy} down"), e))?;
    Ok(Active::Down { client: client.clone(), proxy: proxy.to_string() })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Toxic names stay URL-path friendly.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toxic_names_are_path_safe() {
        assert_eq!(sanitize("slow payments/2"), "slow-payments-2");
    }

    /// Issue 11 item 5: a local host fault that its lease ended before the run reverted it is reported as
    /// lost, not as reverted; one still held is reverted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_host_fault_gone_before_its_revert_is_lost_and_a_held_one_is_reverted() {
        use chaos_agent::Count;
        use chaos_agent::host::HostAgent;
        use chaos_agent::policy::AgentPolicy;
        use chaos_agent::process::ProcessSelector;
        use chaos_agent::spec::{CountSpec, FaultSpec};

        let dir = std::env::temp_dir().join(format!("chaos-engine-lost-{}", std::process::id()));
        let (agent, _) = HostAgent::start(&dir, AgentPolicy::default(), 1).unwrap();
        let mut victim = std::process::Command::new("sleep").arg("300").spawn().unwrap();
        let pause = FaultSpec::ProcessPause {
            target: ProcessSelector { pid: Some(victim.id() as i32), ..ProcessSelector::default() },
            count: CountSpec(Count::Exactly(1)),
        };
        let active = |applied: chaos_agent::host::Applied| Active::Host {
            agent: agent.clone(),
            id: applied.id.unwrap(),
            description: applied.description,
        };

        let early = active(agent.apply(&pause, Some(Duration::from_millis(200))).unwrap());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !agent.active().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the lease never fired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(early.lost_now().is_some_and(|why| why.contains("no longer holds it")));
        match early.revert().await {
            Ok(Reverted::Lost(why)) => assert!(why.contains("no longer held it"), "{why}"),
            other => panic!("expected lost, found {other:?}"),
        }

        let held = active(agent.apply(&pause, Some(Duration::from_secs(60))).unwrap());
        assert_eq!(held.lost_now(), None);
        assert_eq!(held.revert().await, Ok(Reverted::Done));
        assert!(agent.active().is_empty());
        victim.kill().unwrap();
        victim.wait().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
