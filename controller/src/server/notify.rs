//! `NotifyService` on the [`Api`] (`chaos notify log|test|channels`): every call authenticated as
//! `ControllerService`'s are, `NotifyTest` audited; and [`RunEvents`], the [`RunListener`] that turns finished
//! runs into notifications (a guardrail trip; a run failed or inconclusive).

use chaos_proto::v1::{self, notify_service_server::NotifyService};
use tonic::{Request, Response, Status};

use super::api::Api;
use super::error::ApiError;
use super::runs::RunListener;
use crate::engine::{EventKind, Outcome, Verdict};
use crate::experiment::Checked;
use crate::notify::{Event, Notifier};
use crate::store::{DeliveryFilter, DeliveryRecord, RunRecord};

/// The longest test message, channel name or filter accepted.
const MAX_TEXT: usize = 2000;

/// Tells the notifier about finished runs: a tripped guardrail, then (for any run that did not pass) the
/// failure. Never waits ([`Notifier::emit`]).
pub struct RunEvents(pub Notifier);

impl RunListener for RunEvents {
    fn run_finished(&self, run: &RunRecord, _exp: &Checked, outcome: &Outcome) {
        for event in run_events(run, outcome) {
            self.0.emit(event);
        }
    }
}

/// The notifications a finished run makes: `GuardrailTripped` for its first guardrail trip, `RunFailed` when
/// its verdict is failed or inconclusive (a halted run is inconclusive: someone stopped it, and knows).
pub fn run_events(run: &RunRecord, outcome: &Outcome) -> Vec<Event> {
    let mut events = Vec::new();
    let trip = outcome
        .timeline
        .iter()
        .find(|e| e.kind == EventKind::Guardrail && e.name == "guardrail" && e.ok == Some(false));
    if let Some(trip) = trip {
        events.push(Event::GuardrailTripped {
            run_id: run.id.clone(),
            title: run.title.clone(),
            reason: trip.detail.clone(),
        });
    }
    let halted = run.state == crate::store::RunState::Halted;
    if matches!(outcome.verdict, Verdict::Failed | Verdict::Inconclusive) && !halted {
        events.push(Event::RunFailed {
            run_id: run.id.clone(),
            title: run.title.clone(),
            verdict: outcome.verdict.as_str().to_string(),
            reasons: outcome.reasons.clone(),
        });
    }
    events
}

fn checked_text(what: &str, text: String) -> Result<Option<String>, Status> {
    if text.len() > MAX_TEXT {
        return Err(Status::invalid_argument(format!("{what} is {} bytes, at most {MAX_TEXT}", text.len())));
    }
    Ok((!text.trim().is_empty()).then(|| text.trim().to_string()))
}

fn delivery_out(d: DeliveryRecord) -> v1::NotifyDelivery {
    v1::NotifyDelivery {
        id: d.delivery.id,
        notification_id: d.delivery.notification,
        channel: d.delivery.channel,
        channel_kind: d.delivery.channel_kind,
        event: d.delivery.event,
        summary: d.delivery.summary,
        created_unix_ms: d.delivery.created_ms,
        state: d.state,
        attempts: d
            .attempts
            .into_iter()
            .map(|a| v1::NotifyAttempt {
                attempt: a.attempt,
                at_unix_ms: a.at_ms,
                elapsed_ms: a.elapsed_ms,
                status: a.status.map_or(0, u32::from),
                error: a.error.unwrap_or_default(),
            })
            .collect(),
        delivered_unix_ms: d.delivered_ms.unwrap_or(0),
        last_error: d.last_error.unwrap_or_default(),
        payload: d.delivery.payload,
    }
}

const STATES: [&str; 5] = ["pending", "retrying", "delivered", "failed", "dropped"];

#[tonic::async_trait]
impl NotifyService for Api {
    async fn notify_log(
        &self,
        request: Request<v1::NotifyLogRequest>,
    ) -> Result<Response<v1::NotifyLogResponse>, Status> {
        self.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        let state = checked_text("the state", req.state)?;
        if let Some(state) = &state
            && !STATES.contains(&state.as_str())
        {
            return Err(Status::invalid_argument(format!(
                "unknown delivery state {state:?}: expected one of {}",
                STATES.join(", ")
            )));
        }
        let filter = DeliveryFilter {
            limit: req.limit as usize,
            channel: checked_text("the channel", req.channel)?,
            event: checked_text("the event", req.event)?,
            state,
            notification: None,
        };
        let deliveries = self.store.call(move |s| s.deliveries(&filter)).await.map_err(ApiError::from)?;
        Ok(Response::new(v1::NotifyLogResponse {
            deliveries: deliveries.into_iter().map(delivery_out).collect(),
        }))
    }

    async fn notify_test(
        &self,
        request: Request<v1::NotifyTestRequest>,
    ) -> Result<Response<v1::NotifyTestResponse>, Status> {
        let actor = self.tokens.api_principal(request.metadata())?;
        let req = request.into_inner();
        let channel = checked_text("the channel", req.channel)?;
        let text = checked_text("the text", req.text)?.unwrap_or_else(|| "test notification".to_string());
        if self.notifier.channels().is_empty() {
            return Err(Status::failed_precondition(
                "no notification channels are configured (start the controller with --notify FILE)",
            ));
        }
        let outcomes =
            self.notifier.test(channel.as_deref(), &actor, &text).await.map_err(Status::not_found)?;
        let summary: Vec<String> = outcomes
            .iter()
            .map(|o| format!("{}: {}", o.channel, if o.delivered { "delivered" } else { "failed" }))
            .collect();
        self.audit(&actor, "notify_test", format!("{text:?} → {}", summary.join(", ")));
        let results = outcomes
            .into_iter()
            .map(|o| v1::NotifyTestResult {
                channel: o.channel,
                delivered: o.delivered,
                attempts: o.attempts,
                status: o.status.map_or(0, u32::from),
                error: o.error.unwrap_or_default(),
                elapsed_ms: u64::try_from(o.elapsed.as_millis()).unwrap_or(u64::MAX),
            })
            .collect();
        Ok(Response::new(v1::NotifyTestResponse { results }))
    }

    async fn list_channels(
        &self,
        request: Request<v1::ListChannelsRequest>,
    ) -> Result<Response<v1::ListChannelsResponse>, Status> {
        self.tokens.api_principal(request.metadata())?;
        let channels = self
            .notifier
            .channels()
            .into_iter()
            .map(|c| v1::NotifyChannel {
                name: c.name,
                kind: c.kind,
                events: c.events,
                target: c.target,
                timeout_ms: u64::try_from(c.timeout.as_millis()).unwrap_or(u64::MAX),
                retries: c.retries,
                signed: c.signed,
            })
            .collect();
        Ok(Response::new(v1::ListChannelsResponse { channels }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::TimelineEvent;
    use crate::store::RunState;

    fn run(state: RunState) -> RunRecord {
        RunRecord {
            id: "r-1".into(),
            experiment_id: "e-1".into(),
            title: "checkout under loss".into(),
            state,
            verdict: None,
            reasons: Vec::new(),
            seed: 1,
            started_ms: 0,
            finished_ms: None,
            actor: "ci".into(),
            schedule_id: None,
            plan: String::new(),
            journal_json: None,
            exit_code: None,
        }
    }

    fn outcome(verdict: Verdict, tripped: bool) -> Outcome {
        let mut timeline = vec![TimelineEvent {
            at: Duration::from_secs(1),
            kind: EventKind::Guardrail,
            name: "budget gate".into(),
            detail: "budget ok".into(),
            ok: Some(false),
        }];
        if tripped {
            timeline.push(TimelineEvent {
                at: Duration::from_secs(5),
                kind: EventKind::Guardrail,
                name: "guardrail".into(),
                detail: "error rate 12% > 5%".into(),
                ok: Some(false),
            });
        }
        Outcome { verdict, reasons: vec!["slo checkout failed".into()], timeline, ..Outcome::default() }
    }

    #[test]
    fn a_tripped_guardrail_and_a_failure_are_told_a_pass_and_a_halt_are_not() {
        let events = run_events(&run(RunState::Inconclusive), &outcome(Verdict::Inconclusive, true));
        assert_eq!(
            events,
            vec![
                Event::GuardrailTripped {
                    run_id: "r-1".into(),
                    title: "checkout under loss".into(),
                    reason: "error rate 12% > 5%".into()
                },
                Event::RunFailed {
                    run_id: "r-1".into(),
                    title: "checkout under loss".into(),
                    verdict: "inconclusive".into(),
                    reasons: vec!["slo checkout failed".into()]
                },
            ]
        );
        assert!(matches!(
            run_events(&run(RunState::Failed), &outcome(Verdict::Failed, false)).as_slice(),
            [Event::RunFailed { verdict, .. }] if verdict == "failed"
        ));
        assert_eq!(run_events(&run(RunState::Passed), &outcome(Verdict::Passed, false)), vec![]);
        assert_eq!(run_events(&run(RunState::Halted), &outcome(Verdict::Inconclusive, false)), vec![]);
    }
}
