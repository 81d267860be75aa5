//! Fires schedules: sleeps until the earliest next firing of any schedule (wall clock, in each schedule's time
//! zone, inside its windows, not on its blackout dates), then starts the run as `schedule:<name>`. A firing
//! is skipped, with an audit entry saying why, while the controller is frozen or (with `skip_if_running`)
//! while the schedule's previous run is still going, or when the experiment's budget gate refuses it (the
//! refused run is in the run list, inconclusive, with the gate's reason).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::runs::{Refused, Runs, StartRequest, now_ms};
use crate::schedule::Timing;
use crate::store::{NewAudit, ScheduleRecord, StoreHandle};

/// The longest sleep between looks at the schedules (clock changes and new schedules are noticed by then at
/// the latest; new schedules also poke `changed`).
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Runs until `stop`.
pub async fn run(store: StoreHandle, runs: Arc<Runs>, changed: Arc<Notify>, stop: CancellationToken) {
    // The last instant each schedule fired for, so one instant never fires twice.
    let mut fired: HashMap<String, DateTime<Utc>> = HashMap::new();
    loop {
        let now = Utc::now();
        let schedules = match store.call(|s| s.schedules()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "the scheduler cannot read the schedules");
                Vec::new()
            }
        };
        let mut due: Vec<(ScheduleRecord, DateTime<Utc>)> = Vec::new();
        let mut next: Option<DateTime<Utc>> = None;
        for schedule in schedules {
            let timing = match Timing::parse(
                &schedule.cron,
                &schedule.timezone,
                &schedule.windows,
                &schedule.blackout_dates,
            ) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(schedule = %schedule.name, error = %e, "schedule cannot fire");
                    continue;
                }
            };
            // Firings from a second ago count: the sleep may wake a little late.
            let since = fired
                .get(&schedule.id)
                .copied()
                .unwrap_or(now - chrono::Duration::seconds(1))
                .max(now - chrono::Duration::seconds(1));
            let Some(at) = timing.next_after(since) else { continue };
            if at <= now {
                due.push((schedule, at));
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        if !due.is_empty() {
            for (schedule, at) in due {
                fired.insert(schedule.id.clone(), at);
                fire(&store, &runs, &schedule).await;
            }
            // Their next firings were not computed: look again at once.
            continue;
        }
        let sleep = next.and_then(|n| (n - Utc::now()).to_std().ok()).unwrap_or(MAX_SLEEP).min(MAX_SLEEP);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = changed.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

async fn fire(store: &StoreHandle, runs: &Arc<Runs>, schedule: &ScheduleRecord) {
    let actor = format!("schedule:{}", schedule.name);
    let skip = if let Some(f) = runs.frozen() {
        Some(format!("skipped: the controller is frozen ({})", f.reason))
    } else if schedule.skip_if_running && runs.schedule_running(&schedule.id) {
        Some("skipped: its previous run is still running".to_string())
    } else {
        None
    };
    let (run_id, detail) = match skip {
        Some(why) => (None, why),
        None => match store
            .call({
                let id = schedule.experiment_id.clone();
                move |s| s.experiment(&id)
            })
            .await
        {
            Ok(Some(experiment)) => {
                let request = StartRequest {
                    experiment,
                    seed: schedule.seed,
                    dry_run: false,
                    actor: actor.clone(),
                    schedule_id: Some(schedule.id.clone()),
                };
                match runs.start_or_refuse(request).await {
                    Ok(run) => (Some(run.id.clone()), format!("started run {}", run.id)),
                    Err(Refused::Gate { run, reason }) => (Some(run.id), format!("skipped: {reason}")),
                    Err(Refused::Status(status)) => (None, format!("could not start: {}", status.message())),
                }
            }
            Ok(None) => (None, format!("experiment {} not found", schedule.experiment_id)),
            Err(e) => (None, format!("store: {e}")),
        },
    };
    tracing::info!(schedule = %schedule.name, %detail, "schedule fired");
    let entry = NewAudit {
        at_ms: now_ms(),
        actor,
        action: "schedule_fired".into(),
        agent_id: None,
        run_id: run_id.clone(),
        fault_id: None,
        detail,
    };
    store.submit("the audit log", move |s| s.append_audit(&entry).map(|_| ()));
    let id = schedule.id.clone();
    store.submit("the schedule's firing", move |s| s.schedule_fired(&id, now_ms(), run_id.as_deref()));
}
