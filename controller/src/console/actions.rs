//! What the console may do, each in two steps: a confirmation page (GET) whose form carries the session's CSRF
//! token and `confirm=yes`, then the POST that acts through the API's own code path — `Runs::halt` (HaltRun),
//! `Api::halt_all_as` (HaltAll), `Api::freeze_as` / `Api::unfreeze_as` — so the audit log records each under
//! the logged-in principal exactly as it would a gRPC call.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::response::{Html, Redirect};
use chaos_proto::v1;

use super::Console;
use super::error::{ConsoleError, form};
use super::html::{Esc, url_part, utc};
use super::pages::{bounded, frame, stored_run};
use super::session::Authed;
use crate::store::RunState;

/// How long a halt from the console waits for the run to finish reverting (as HaltRun does).
const HALT_WAIT: Duration = Duration::from_secs(60);
/// How long a halt-all waits for the agents' acknowledgements (HaltAll's default).
const HALT_ALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Every acting form's fields.
#[derive(serde::Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    /// `yes` from the confirmation page's button; anything else is refused.
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    reason: String,
    /// Halt-all only: also freeze (`on` from the checkbox).
    #[serde(default)]
    freeze: Option<String>,
}

impl ActionForm {
    /// The checks every acting POST passes first: the CSRF token, the confirmation, a bounded reason.
    fn checked(&self, authed: &Authed) -> Result<String, ConsoleError> {
        authed.check_csrf(&self.csrf)?;
        if self.confirm != "yes" {
            return Err(ConsoleError::BadRequest(
                "not confirmed: use the confirmation page's button (the form needs confirm=yes)".into(),
            ));
        }
        Ok(bounded("the reason", self.reason.trim())?.to_string())
    }
}

/// A confirmation form posting to `action`: the question, a reason field, extra fields, the button.
fn confirm_form(authed: &Authed, action: &str, question: &str, extra: &str, button: &str) -> String {
    format!(
        "<form class=\"confirm\" method=\"post\" action=\"{action}\"><p class=\"question\">{question}</p>\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><label>Reason (for the audit log) \
         <input name=\"reason\" maxlength=\"{max}\"></label>{extra}\
         <p><button id=\"confirm\" class=\"danger\" type=\"submit\" name=\"confirm\" value=\"yes\">{button}</button> \
         <a href=\"/controls\">Cancel</a></p></form>",
        csrf = Esc(&authed.csrf),
        max = super::pages::MAX_FIELD,
    )
}

/// `GET /controls`: the freeze flag and the runs in progress, with the buttons that lead to confirmations.
pub async fn controls(
    State(console): State<Arc<Console>>,
    authed: Authed,
) -> Result<Html<String>, ConsoleError> {
    let mut out = String::new();
    match console.api.runs.frozen() {
        Some(f) => {
            let _ = write!(
                out,
                "<p id=\"freeze-state\">Frozen by {} since {}: {}</p>\
                 <p><a id=\"unfreeze-button\" class=\"button\" href=\"/controls/unfreeze\">Unfreeze…</a></p>",
                Esc(&f.by),
                utc(f.since_ms),
                Esc(&f.reason)
            );
        }
        None => out.push_str(
            "<p id=\"freeze-state\">Not frozen: runs and schedules may start.</p>\
             <p><a id=\"freeze-button\" class=\"button\" href=\"/controls/freeze\">Freeze…</a></p>",
        ),
    }
    let active = console.api.runs.active_ids();
    let _ = write!(out, "<h2>Runs in progress ({})</h2>", active.len());
    if active.is_empty() {
        out.push_str("<p class=\"empty\">None.</p>");
    } else {
        out.push_str("<ul id=\"active-runs\">");
        for id in &active {
            let _ = write!(
                out,
                "<li><a href=\"/runs/{link}\">{id}</a> <a class=\"button danger\" href=\"/runs/{link}/halt\">Halt…</a></li>",
                link = url_part(id),
                id = Esc(id)
            );
        }
        out.push_str("</ul>");
    }
    out.push_str(
        "<h2>Halt everything</h2><p>Halts every run in progress and asks every connected agent to revert every \
         fault it holds.</p><p><a id=\"halt-all-button\" class=\"button danger\" href=\"/controls/halt-all\">Halt \
         all…</a></p>",
    );
    Ok(frame(&console, &authed, "Freeze & halt", "controls").render(&out))
}

/// `GET /runs/{id}/halt`: asks before halting one run.
pub async fn halt_run_confirm(
    State(console): State<Arc<Console>>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let run = stored_run(&console, &id).await?;
    let body = if matches!(run.state, RunState::Running | RunState::Pending) {
        let question = format!(
            "Halt run <strong>{}</strong> ({})? Its method stops and everything it applied is reverted; it ends \
             halted, inconclusive.",
            Esc(&run.id),
            Esc(&run.title)
        );
        confirm_form(&authed, &format!("/runs/{}/halt", url_part(&run.id)), &question, "", "Halt the run")
    } else {
        format!(
            "<p>Run {} is {}: there is nothing to halt. <a href=\"/runs/{}\">Back to the run</a></p>",
            Esc(&run.id),
            run.state.as_str(),
            url_part(&run.id)
        )
    };
    Ok(frame(&console, &authed, "Halt a run", "runs").render(&body))
}

/// `POST /runs/{id}/halt`: `Runs::halt`, as HaltRun does, then back to the run's page.
pub async fn halt_run(
    State(console): State<Arc<Console>>,
    authed: Authed,
    Path(id): Path<String>,
    f: Result<axum::Form<ActionForm>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    let f = form(f)?;
    let reason = f.checked(&authed)?;
    bounded("the run id", &id)?;
    let reason = if reason.is_empty() { "halted from the web console".to_string() } else { reason };
    tracing::warn!(run = %id, actor = %authed.principal, %reason, "web console: halting a run");
    console.api.runs.halt(&id, &authed.principal, &reason, HALT_WAIT).await?;
    Ok(Redirect::to(&format!("/runs/{}", url_part(&id))))
}

/// `GET /controls/halt-all`
pub async fn halt_all_confirm(
    State(console): State<Arc<Console>>,
    authed: Authed,
) -> Result<Html<String>, ConsoleError> {
    let question = format!(
        "Halt all {} runs in progress and revert every fault on every connected agent?",
        console.api.runs.active_ids().len()
    );
    let extra = "<label><input type=\"checkbox\" name=\"freeze\" checked> and freeze (no run starts until \
                 unfrozen)</label>";
    let body = confirm_form(&authed, "/controls/halt-all", &question, extra, "Halt all");
    Ok(frame(&console, &authed, "Halt all", "controls").render(&body))
}

/// `POST /controls/halt-all`: `Api::halt_all_as`, as HaltAll does; shows what was halted.
pub async fn halt_all(
    State(console): State<Arc<Console>>,
    authed: Authed,
    f: Result<axum::Form<ActionForm>, FormRejection>,
) -> Result<Html<String>, ConsoleError> {
    let f = form(f)?;
    let reason = f.checked(&authed)?;
    let reason = if reason.is_empty() { "halt all from the web console".to_string() } else { reason };
    let freeze = f.freeze.is_some();
    tracing::warn!(actor = %authed.principal, %reason, freeze, "web console: halting everything");
    let request = v1::HaltAllRequest {
        reason,
        freeze,
        timeout_ms: u64::try_from(HALT_ALL_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
    };
    let done = console.api.halt_all_as(&authed.principal, request).await?;
    let list = |ids: &[String]| {
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.iter().map(|i| Esc(i).to_string()).collect::<Vec<_>>().join(", ")
        }
    };
    let body = format!(
        "<dl id=\"halt-all-result\" class=\"facts\"><dt>Runs halted</dt><dd>{}</dd><dt>Agents that acknowledged</dt>\
         <dd>{}</dd><dt>Agents that did not answer</dt><dd>{}</dd><dt>Took</dt><dd>{} ms</dd><dt>Frozen</dt>\
         <dd>{}</dd></dl><p><a href=\"/controls\">Back</a></p>",
        list(&done.runs_halted),
        list(&done.agents_acknowledged),
        list(&done.agents_missing),
        done.elapsed_ms,
        if done.frozen { "yes" } else { "no" }
    );
    Ok(frame(&console, &authed, "Halted", "controls").render(&body))
}

/// `GET /controls/freeze`
pub async fn freeze_confirm(
    State(console): State<Arc<Console>>,
    authed: Authed,
) -> Result<Html<String>, ConsoleError> {
    let question = "Freeze the controller? No run (scheduled or not) and no fault starts until it is unfrozen; \
                    runs in progress go on.";
    let body = confirm_form(&authed, "/controls/freeze", question, "", "Freeze");
    Ok(frame(&console, &authed, "Freeze", "controls").render(&body))
}

/// `POST /controls/freeze`: `Api::freeze_as`, as Freeze does.
pub async fn freeze(
    State(console): State<Arc<Console>>,
    authed: Authed,
    f: Result<axum::Form<ActionForm>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    let reason = form(f)?.checked(&authed)?;
    console.api.freeze_as(&authed.principal, reason).await?;
    Ok(Redirect::to("/controls"))
}

/// `GET /controls/unfreeze`
pub async fn unfreeze_confirm(
    State(console): State<Arc<Console>>,
    authed: Authed,
) -> Result<Html<String>, ConsoleError> {
    let body = confirm_form(
        &authed,
        "/controls/unfreeze",
        "Unfreeze? Runs and schedules may start again.",
        "",
        "Unfreeze",
    );
    Ok(frame(&console, &authed, "Unfreeze", "controls").render(&body))
}

/// `POST /controls/unfreeze`: `Api::unfreeze_as`, as Unfreeze does.
pub async fn unfreeze(
    State(console): State<Arc<Console>>,
    authed: Authed,
    f: Result<axum::Form<ActionForm>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    let reason = form(f)?.checked(&authed)?;
    console.api.unfreeze_as(&authed.principal, reason).await?;
    Ok(Redirect::to("/controls"))
}
