//! Proxies a run creates (targets with `listen` and `upstream`) never outlive it by more than a stated bound:
//!
//! - on `chaos proxy`, each is created with a lease ([`PROXY_LEASE`]) that the run renews every third of it
//!   ([`RENEW_EVERY`]) while it holds the proxy; a runner killed with SIGKILL stops renewing, and the server
//!   deletes the proxy (listener and connections) at most [`PROXY_LEASE`] after the last renewal;
//! - a server whose view of the new proxy has no lease (a real Toxiproxy ignores the field) cannot expire it,
//!   so the proxy is journaled ([`Undo::DeleteProxy`], written before it is created): `chaos agent
//!   revert-all`, the agent's watchdog and the next start (the next run's create replays orphaned records
//!   first) delete it;
//! - each proxy is marked with its creator ([`Mark`]: host, boot, pid and start time, experiment), so the next
//!   run of the same experiment replaces its own stale proxy when that creator is gone, and refuses (409, with
//!   a message naming the proxy and how to remove it) a proxy that someone else made.

use std::path::PathBuf;
use std::time::Duration;

use chaos_agent::journal::{Entry, Journal, ReplayMode, Undo};
use chaos_agent::process::ProcessId;
use chaos_proxy_api::client::{Client, NewProxy, ProxyOptions, ProxyUpdate};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The lease a run's proxy is created and renewed with on `chaos proxy`: the bound on how long it outlives a
/// runner killed with SIGKILL.
pub const PROXY_LEASE: Duration = Duration::from_secs(6);
/// How often the run renews its proxies' leases: every third of the lease, so two renewals can fail (or be
/// late on a loaded host) before a live run loses its proxy.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
/// The journal record's kind, in `chaos agent status` listings.
const RECORD_KIND: &str = "run-proxy";

/// The proxies one run created, renewed until [`CreatedProxies::delete`].
#[derive(Default)]
pub struct CreatedProxies {
    proxies: Vec<Created>,
    /// Stops the renewal task; `None` when no proxy has a lease.
    renewer: Option<(CancellationToken, JoinHandle<()>)>,
}

struct Created {
    client: Client,
    api: String,
    name: String,
    /// Whether the server holds a lease on it (renewed by the run); otherwise it is journaled.
    leased: bool,
    /// The undo record of a proxy the server cannot expire; deleted once the proxy is.
    record: Option<Entry>,
}

/// Who created a proxy, as written into its `owner` field:
/// `chaos-run host=H boot=B pid=P start=S experiment=TITLE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub host: String,
    pub boot: String,
    pub owner: ProcessId,
    pub experiment: String,
}

// === impl Mark ===

impl Mark {
    const PREFIX: &'static str = "chaos-run ";

    /// This process, running `experiment`.
    fn current(experiment: &str) -> Result<Mark, String> {
        let owner = ProcessId::of(std::process::id() as i32).map_err(|e| e.to_string())?;
        let boot = chaos_agent::journal::boot_id().map_err(|e| e.to_string())?;
        // Control characters would break the one-line format; titles rarely have any.
        let experiment = experiment.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        Ok(Mark { host: hostname(), boot, owner, experiment })
    }

    pub fn render(&self) -> String {
        format!(
            "{}host={} boot={} pid={} start={} experiment={}",
            Mark::PREFIX,
            self.host,
            self.boot,
            self.owner.pid,
            self.owner.start_time,
            self.experiment
        )
    }

    /// The mark in an `owner` field, or `None` when it is not a chaos run's.
    pub fn parse(text: &str) -> Option<Mark> {
        let rest = text.strip_prefix(Mark::PREFIX)?;
        let (fields, experiment) = rest.split_once(" experiment=")?;
        let mut parts = fields.split(' ');
        let mut next = |key: &str| parts.next()?.strip_prefix(key).map(str::to_string);
        let host = next("host=")?;
        let boot = next("boot=")?;
        let pid = next("pid=")?.parse().ok()?;
        let start_time = next("start=")?.parse().ok()?;
        Some(Mark { host, boot, owner: ProcessId { pid, start_time }, experiment: experiment.to_string() })
    }

    /// Whether the creator is known to be gone: on this host, it rebooted since or the process (pid and start
    /// time) is not running. On another host nothing is known.
    fn owner_gone(&self, here: &Mark) -> Option<bool> {
        if self.host != here.host {
            return None;
        }
        Some(self.boot != here.boot || self.owner.check().is_err())
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

// === creating ===

/// One proxy to create.
pub struct Wanted<'a> {
    pub client: &'a Client,
    pub api: &'a str,
    pub name: &'a str,
    pub listen: &'a str,
    pub upstream: &'a str,
    pub protocol: Option<String>,
}

/// Creates every wanted proxy (leased, marked, journaled where the server cannot expire it) and starts
/// renewing the leases. On error, those already created are deleted and the error says which proxy and why.
/// `notes` receives what was done about stale proxies.
pub async fn create(
    wanted: Vec<Wanted<'_>>,
    experiment: &str,
    state_dir: PathBuf,
    notes: &mut Vec<String>,
) -> Result<CreatedProxies, String> {
    let mut created = CreatedProxies::default();
    if wanted.is_empty() {
        return Ok(created);
    }
    let mark =
        Mark::current(experiment).map_err(|e| format!("identifying this run to mark its proxies: {e}"))?;
    // Records of runs that died holding proxies on servers without leases go first, so a stale proxy of
    // ours is deleted before we create its successor (and its record cannot delete the successor later).
    let journal = open_journal(state_dir, notes).await;
    for want in wanted {
        match create_one(&want, &mark, journal.as_ref(), notes).await {
            Ok(one) => created.proxies.push(one),
            Err(e) => {
                created.delete().await;
                return Err(format!("creating proxy {}: {e}", want.name));
            }
        }
    }
    created.start_renewing();
    Ok(created)
}

/// Opens the journal and replays orphaned records; `None` (with a note) when it cannot be opened.
async fn open_journal(state_dir: PathBuf, notes: &mut Vec<String>) -> Option<Journal> {
    let opened = tokio::task::spawn_blocking(move || {
        let journal = Journal::open(&state_dir)?;
        let report = journal.replay(ReplayMode::Orphaned);
        Ok::<_, chaos_agent::AgentError>((journal, report))
    })
    .await;
    match opened {
        Ok(Ok((journal, report))) => {
            for r in &report.reverted {
                notes.push(format!("reverted {} {} left by pid {}", r.fault_id, r.kind, r.owner.pid));
            }
            for (r, e) in &report.failed {
                notes.push(format!(
                    "could not revert {} {} left by pid {}: {e}",
                    r.fault_id, r.kind, r.owner.pid
                ));
            }
            Some(journal)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "no undo journal for the run's proxies");
            notes.push(format!("undo journal unavailable: {e}"));
            None
        }
        Err(e) => {
            notes.push(format!("undo journal unavailable: {e}"));
            None
        }
    }
}

async fn create_one(
    want: &Wanted<'_>,
    mark: &Mark,
    journal: Option<&Journal>,
    notes: &mut Vec<String>,
) -> Result<Created, String> {
    // The record is on disk before the proxy exists: a runner killed in between leaves a record whose replay
    // finds nothing to delete (404 counts as done).
    let record = begin_record(journal, want).await;
    let proxy = NewProxy {
        name: want.name.to_string(),
        listen: Some(want.listen.to_string()),
        upstream: want.upstream.to_string(),
        enabled: None,
        half_close: None,
    };
    let options = ProxyOptions {
        protocol: want.protocol.clone(),
        lease_ms: Some(millis(PROXY_LEASE)),
        owner: Some(mark.render()),
        ..Default::default()
    };
    let view = match want.client.create_proxy_with(&proxy, &options).await {
        Ok(view) => Ok(view),
        Err(e) if e.status() == Some(409) => match replace_stale(want, mark, notes).await {
            Ok(()) => want.client.create_proxy_with(&proxy, &options).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e.to_string()),
    };
    let view = match view {
        Ok(view) => view,
        Err(e) => {
            // Nothing of ours was created: the record must not stay, or its replay would delete a proxy
            // that someone else holds under this name.
            finish(record.ok()).await;
            return Err(e);
        }
    };
    if view.lease_ms.is_some() {
        // The server expires it by itself; the record is not needed.
        finish(record.ok()).await;
        return Ok(Created {
            client: want.client.clone(),
            api: want.api.into(),
            name: want.name.into(),
            leased: true,
            record: None,
        });
    }
    match record {
        Ok(entry) => Ok(Created {
            client: want.client.clone(),
            api: want.api.into(),
            name: want.name.into(),
            leased: false,
            record: Some(entry),
        }),
        Err(why) => {
            let _ = want.client.delete_proxy(want.name).await;
            Err(format!(
                "the server at {} cannot expire proxies (no lease in its answer: a real Toxiproxy?) and the run \
                 could not journal it for deletion: {why}",
                want.api
            ))
        }
    }
}

/// Writes the undo record of a proxy about to be created, or says why there is none.
async fn begin_record(journal: Option<&Journal>, want: &Wanted<'_>) -> Result<Entry, String> {
    let undo = vec![Undo::DeleteProxy { api: want.api.to_string(), name: want.name.to_string() }];
    let journal = journal.ok_or("the undo journal could not be opened")?.clone();
    match tokio::task::spawn_blocking(move || journal.begin_external(RECORD_KIND, undo)).await {
        Ok(Ok(entry)) => Ok(entry),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The proxy named like ours exists: delete it when it is our experiment's and its creator is gone (or
/// wait out its lease when the creator is on another host); otherwise refuse, naming who has it.
async fn replace_stale(want: &Wanted<'_>, here: &Mark, notes: &mut Vec<String>) -> Result<(), String> {
    let (api, name) = (want.api, want.name);
    let existing =
        want.client.proxy(name).await.map_err(|e| format!("proxy already exists; reading it: {e}"))?;
    let how_to_remove = format!(
        "delete it (`chaos proxies --host {api} delete {name}`, or DELETE {api}/proxies/{name}) or give the target \
         another proxy name"
    );
    let Some(mark) = existing.owner.as_deref().and_then(Mark::parse) else {
        return Err(format!(
            "proxy {name} already exists at {api} and was not created by a chaos run, so it is left alone: \
             {how_to_remove}"
        ));
    };
    if mark.experiment != here.experiment {
        return Err(format!(
            "proxy {name} already exists at {api}, created by a chaos run of another experiment ({:?}, pid {} on \
             {}): {how_to_remove}",
            mark.experiment, mark.owner.pid, mark.host
        ));
    }
    match (mark.owner_gone(here), existing.lease_ms) {
        (Some(true), _) => {
            match want.client.delete_proxy(name).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    return Err(format!(
                        "deleting the stale proxy {name} left by pid {}: {e}",
                        mark.owner.pid
                    ));
                }
            }
            notes
                .push(format!("replaced proxy {name} left by a previous run (pid {}, gone)", mark.owner.pid));
            Ok(())
        }
        (Some(false), _) => Err(format!(
            "proxy {name} already exists at {api}: it belongs to a chaos run of this experiment that is still \
             running (pid {} on {}); wait for it to finish or stop it",
            mark.owner.pid, mark.host
        )),
        (None, Some(lease)) => {
            // On another host: a dead creator's proxy lapses within its lease; a live one keeps renewing it.
            let until = tokio::time::Instant::now() + Duration::from_millis(lease) + RENEW_EVERY;
            while tokio::time::Instant::now() < until {
                match want.client.proxy(name).await {
                    Err(e) if e.is_not_found() => {
                        notes.push(format!("proxy {name} of a run on {} lapsed; created anew", mark.host));
                        return Ok(());
                    }
                    _ => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
            Err(format!(
                "proxy {name} already exists at {api}: a chaos run of this experiment on {} (pid {}) still renews \
                 it; wait for that run to finish",
                mark.host, mark.owner.pid
            ))
        }
        (None, None) => Err(format!(
            "proxy {name} already exists at {api}, created by a chaos run on {} (pid {}) that this host cannot \
             check: {how_to_remove}",
            mark.host, mark.owner.pid
        )),
    }
}

async fn finish(record: Option<Entry>) {
    if let Some(entry) = record {
        let result = tokio::task::spawn_blocking(move || entry.finish()).await;
        if let Ok(Err(e)) = result {
            tracing::warn!(error = %e, "could not delete the proxy's undo record");
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// === impl CreatedProxies ===

impl CreatedProxies {
    fn start_renewing(&mut self) {
        let leased: Vec<(Client, String)> = self
            .proxies
            .iter()
            .filter(|p| p.leased)
            .map(|p| (p.client.clone().with_timeout(RENEW_EVERY), p.name.clone()))
            .collect();
        if leased.is_empty() {
            return;
        }
        let stop = CancellationToken::new();
        let task = tokio::spawn(renew(leased, stop.clone()));
        self.renewer = Some((stop, task));
    }

    /// Stops renewing and deletes every proxy (their toxics go with them); a proxy deleted (or already gone)
    /// also loses its undo record. Returns what could not be deleted, by proxy name.
    pub async fn delete(self) -> Vec<(String, String)> {
        if let Some((stop, task)) = self.renewer {
            stop.cancel();
            let _ = task.await;
        }
        let mut failures = Vec::new();
        for created in self.proxies {
            match created.client.delete_proxy(&created.name).await {
                Ok(()) => finish(created.record).await,
                Err(e) if e.is_not_found() => finish(created.record).await,
                Err(e) => {
                    let left = if created.leased {
                        format!("its lease deletes it within {} s", PROXY_LEASE.as_secs())
                    } else {
                        "its undo record stays for `chaos agent revert-all`".to_string()
                    };
                    failures.push((
                        created.name,
                        format!("could not delete the run's proxy at {}: {e}; {left}", created.api),
                    ));
                }
            }
        }
        failures
    }
}

/// Renews every lease each [`RENEW_EVERY`] until stopped. A failed renewal is logged; the next tick retries.
async fn renew(leased: Vec<(Client, String)>, stop: CancellationToken) {
    let update = ProxyUpdate { lease_ms: Some(millis(PROXY_LEASE)), ..ProxyUpdate::default() };
    let mut tick = tokio::time::interval(RENEW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (client, name) in &leased {
            if let Err(e) = client.update_proxy(name, &update).await {
                tracing::warn!(proxy = %name, error = %e, "could not renew the run's proxy lease");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_foreign_owners_are_not_marks() {
        let mark = Mark {
            host: "h1".into(),
            boot: "b-1".into(),
            owner: ProcessId { pid: 42, start_time: 7 },
            experiment: "Checkout survives a slow db".into(),
        };
        assert_eq!(Mark::parse(&mark.render()), Some(mark));
        for foreign in
            ["", "someone", "chaos-run host=h", "chaos-run host=h boot=b pid=x start=1 experiment=e"]
        {
            assert_eq!(Mark::parse(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn the_lease_outlasts_two_missed_renewals() {
        assert_eq!(RENEW_EVERY * 3, PROXY_LEASE);
    }
}
