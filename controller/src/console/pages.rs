//! The console's read-only pages: runs (paginated, filtered by state), one run (live while it runs, its report
//! after), agents (health, labels, capabilities, heartbeats, the remote faults in force with their leases),
//! schedules (next firings, windows, blackout dates) and the audit log (filtered). Everything from the store
//! or the request is escaped ([`Esc`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::Console;
use super::error::ConsoleError;
use super::html::{Esc, Frame, duration, url_part, utc};
use super::session::Authed;
use crate::report::Journal;
use crate::schedule::Timing;
use crate::server::runs::now_ms;
use crate::store::{AuditRecord, RunRecord, RunState, ScheduleRecord};

/// Runs per page.
pub const RUNS_PER_PAGE: usize = 50;
/// Pages of runs reachable: the store lists newest first without an offset, so a page reads every run before it.
pub const MAX_RUN_PAGES: usize = 200;
/// Agents per page.
pub const AGENTS_PER_PAGE: usize = 200;
/// The audit entries read for one page (filters by actor and action apply to these).
pub const AUDIT_LIMIT: usize = 1000;
/// Upcoming firings shown per schedule.
const NEXT_FIRINGS: usize = 3;
/// The longest id, filter or reason the console accepts in a path, query or form.
pub const MAX_FIELD: usize = 500;

/// A query's fields, or 400 saying what was wrong with it.
fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, ConsoleError> {
    q.map(|Query(q)| q).map_err(|e| ConsoleError::BadRequest(format!("malformed query: {e}")))
}

/// Refuses (400) a field longer than [`MAX_FIELD`].
pub fn bounded<'a>(what: &str, value: &'a str) -> Result<&'a str, ConsoleError> {
    if value.len() > MAX_FIELD {
        return Err(ConsoleError::BadRequest(format!(
            "{what} is {} bytes long: at most {MAX_FIELD} are accepted",
            value.len()
        )));
    }
    Ok(value)
}

/// The frame of a logged-in page.
pub fn frame<'a>(console: &Console, authed: &'a Authed, title: &'a str, section: &'a str) -> FramedPage<'a> {
    FramedPage { title, section, authed, frozen: console.api.runs.frozen() }
}

/// [`Frame`] with the freeze flag read now.
pub struct FramedPage<'a> {
    title: &'a str,
    section: &'a str,
    authed: &'a Authed,
    frozen: Option<crate::store::FreezeRecord>,
}

impl FramedPage<'_> {
    pub fn render(&self, body: &str) -> Html<String> {
        Frame {
            title: self.title,
            section: self.section,
            session: Some((&self.authed.principal, &self.authed.csrf)),
            frozen: self.frozen.as_ref(),
        }
        .render(body)
    }
}

/// `GET /`
pub async fn home(_authed: Authed) -> Redirect {
    Redirect::to("/runs")
}

/// Any other path.
pub async fn not_found() -> ConsoleError {
    ConsoleError::NotFound("no such page".into())
}

// === runs ===

#[derive(serde::Deserialize)]
pub struct RunsQuery {
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    state: Option<String>,
}

/// `GET /runs?page=N&state=S`
pub async fn runs(
    State(console): State<Arc<Console>>,
    authed: Authed,
    q: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Html<String>, ConsoleError> {
    let q = query(q)?;
    let page = q.page.unwrap_or(1).max(1);
    if page > MAX_RUN_PAGES {
        return Err(ConsoleError::BadRequest(format!(
            "page {page} is beyond the last reachable page ({MAX_RUN_PAGES}); filter by state instead"
        )));
    }
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(s.parse::<RunState>().map_err(|e| ConsoleError::BadRequest(e.to_string()))?),
    };
    let skip = (page - 1) * RUNS_PER_PAGE;
    let want = skip + RUNS_PER_PAGE + 1;
    let listed = console.api.store.call(move |s| s.runs(want, state)).await?;
    let more = listed.len() > skip + RUNS_PER_PAGE;
    let shown: Vec<&RunRecord> = listed.iter().skip(skip).take(RUNS_PER_PAGE).collect();
    Ok(frame(&console, &authed, "Runs", "runs").render(&runs_body(&shown, page, state, more)))
}

fn runs_body(runs: &[&RunRecord], page: usize, state: Option<RunState>, more: bool) -> String {
    let mut out = String::new();
    out.push_str(
        "<form class=\"filters\" method=\"get\" action=\"/runs\"><label>State <select name=\"state\">",
    );
    out.push_str("<option value=\"\">any</option>");
    for s in RunState::ALL {
        let selected = if Some(s) == state { " selected" } else { "" };
        let _ = write!(out, "<option{selected}>{}</option>", s.as_str());
    }
    out.push_str("</select></label> <button type=\"submit\">Filter</button></form>");
    if runs.is_empty() {
        out.push_str("<p class=\"empty\">No runs.</p>");
    } else {
        out.push_str(
            "<table id=\"runs\"><thead><tr><th>Run</th><th>Experiment</th><th>State</th><th>Verdict</th>\
             <th>Started</th><th>Duration</th><th>Started by</th></tr></thead><tbody>",
        );
        let now = now_ms();
        for r in runs {
            let took = r.finished_ms.unwrap_or(now) - r.started_ms;
            let verdict = r.verdict.as_deref().unwrap_or("");
            let _ = write!(
                out,
                "<tr data-run=\"{id}\"><td><a href=\"/runs/{link}\">{id}</a></td><td>{title}</td>\
                 <td><span class=\"state s-{state}\">{state}</span></td><td>{verdict}</td><td>{started}</td>\
                 <td>{took}{ongoing}</td><td>{actor}</td></tr>",
                id = Esc(&r.id),
                link = url_part(&r.id),
                title = Esc(&r.title),
                state = r.state.as_str(),
                verdict = Esc(verdict),
                started = utc(r.started_ms),
                took = duration(took),
                ongoing = if r.finished_ms.is_none() { " so far" } else { "" },
                actor = Esc(&r.actor),
            );
        }
        out.push_str("</tbody></table>");
    }
    let filter = state.map(|s| format!("&state={}", s.as_str())).unwrap_or_default();
    out.push_str("<nav class=\"pages\">");
    if page > 1 {
        let _ = write!(out, "<a rel=\"prev\" href=\"/runs?page={}{filter}\">Newer</a> ", page - 1);
    }
    let _ = write!(out, "<span>page {page}</span>");
    if more && page < MAX_RUN_PAGES {
        let _ = write!(out, " <a rel=\"next\" href=\"/runs?page={}{filter}\">Older</a>", page + 1);
    }
    out.push_str("</nav>");
    out
}

/// The stored run `id`, or 404.
pub async fn stored_run(console: &Console, id: &str) -> Result<RunRecord, ConsoleError> {
    bounded("the run id", id)?;
    let wanted = id.to_string();
    let run = console.api.store.call(move |s| s.run(&wanted)).await?;
    run.ok_or_else(|| ConsoleError::NotFound(format!("run {id} not found")))
}

/// `GET /runs/{id}`: the run's facts, the halt button while it runs, its live charts (fed by
/// `/runs/{id}/events`), and its report once it has a journal.
pub async fn run(
    State(console): State<Arc<Console>>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let run = stored_run(&console, &id).await?;
    let title = format!("Run {}", run.id);
    Ok(frame(&console, &authed, &title, "runs").render(&run_body(&run)))
}

fn run_body(r: &RunRecord) -> String {
    let mut out = String::new();
    let link = url_part(&r.id);
    let finished = r.finished_ms.is_some();
    let _ = write!(
        out,
        "<dl class=\"facts\"><dt>Experiment</dt><dd>{title}</dd><dt>State</dt>\
         <dd><span id=\"run-state\" class=\"state s-{state}\">{state}</span></dd><dt>Verdict</dt><dd>{verdict}</dd>\
         <dt>Started by</dt><dd>{actor}</dd><dt>Started</dt><dd>{started}</dd><dt>Duration</dt><dd>{took}</dd>\
         <dt>Seed</dt><dd>{seed}</dd>",
        title = Esc(&r.title),
        state = r.state.as_str(),
        verdict = Esc(r.verdict.as_deref().unwrap_or("not yet")),
        actor = Esc(&r.actor),
        started = utc(r.started_ms),
        took = duration(r.finished_ms.unwrap_or_else(now_ms) - r.started_ms),
        seed = r.seed,
    );
    if let Some(schedule) = &r.schedule_id {
        let _ = write!(out, "<dt>Schedule</dt><dd>{}</dd>", Esc(schedule));
    }
    out.push_str("</dl>");
    if !r.reasons.is_empty() {
        out.push_str("<h2>Why</h2><ul class=\"reasons\">");
        for reason in &r.reasons {
            let _ = write!(out, "<li>{}</li>", Esc(reason));
        }
        out.push_str("</ul>");
    }
    if matches!(r.state, RunState::Running | RunState::Pending) {
        let _ = write!(
            out,
            "<p><a id=\"halt-button\" class=\"button danger\" href=\"/runs/{link}/halt\">Halt this run…</a></p>"
        );
    }
    // The live view reads the run's events; for a finished run it draws the whole run from the stored ones.
    let _ = write!(
        out,
        "<section id=\"live\" data-events=\"/runs/{link}/events\" data-state=\"{state}\">\
         <h2>Live</h2><p id=\"live-status\" role=\"status\">{status}</p><div id=\"charts\"></div>\
         <h3>Events</h3><ol id=\"log\" class=\"log\"></ol></section>",
        state = if finished { "finished" } else { "connecting" },
        status = if finished { "finished" } else { "connecting to the run's events…" },
    );
    if r.journal_json.is_some() {
        let _ = write!(
            out,
            "<h2>Report</h2><p><a id=\"report-link\" href=\"/runs/{link}/report\">Open the report on its own \
             page</a></p><iframe id=\"report\" title=\"The run's report\" sandbox src=\"/runs/{link}/report\">\
             </iframe>"
        );
    }
    if !r.plan.is_empty() {
        let _ = write!(out, "<details><summary>Plan</summary><pre>{}</pre></details>", Esc(&r.plan));
    }
    out
}

/// `GET /runs/{id}/report`: the run's report as a document of its own (framed by the run page, sandboxed).
pub async fn report(
    State(console): State<Arc<Console>>,
    _authed: Authed,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let run = stored_run(&console, &id).await?;
    let Some(json) = run.journal_json else {
        return Err(ConsoleError::NotFound(format!("run {id} has no report yet: it has not finished")));
    };
    let journal: Journal = serde_json::from_str(&json)
        .map_err(|e| ConsoleError::Internal(format!("run {id}: its stored journal does not parse: {e}")))?;
    let mut response = Html(crate::report::render_html(&journal)).into_response();
    let headers = response.headers_mut();
    // Inline CSS and SVG, no script; only the console itself may frame it.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; \
             base-uri 'none'; form-action 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    Ok(response)
}

// === agents ===

#[derive(serde::Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    page: Option<usize>,
}

/// `GET /agents?page=N`: every agent ever seen, connected ones with their health, and the remote faults in force
/// with their leases.
pub async fn agents(
    State(console): State<Arc<Console>>,
    authed: Authed,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Html<String>, ConsoleError> {
    let page = query(q)?.page.unwrap_or(1).max(1);
    let listed = console.api.fleet.list(&BTreeMap::new()).await?;
    let held = console.api.fleet.held_faults();
    let now = now_ms();
    let mut out = String::new();
    let _ = write!(out, "<h2>Faults in force ({})</h2>", held.len());
    if held.is_empty() {
        out.push_str("<p class=\"empty\">None.</p>");
    } else {
        out.push_str(
            "<table id=\"faults\"><thead><tr><th>Fault</th><th>Agent</th><th>Run</th><th>Started by</th>\
             <th>Lease left</th><th>Renewed for</th><th>State</th></tr></thead><tbody>",
        );
        for f in &held {
            let state = match (f.reverting, f.disconnected) {
                (true, _) => "reverting",
                (false, true) => "agent disconnected",
                (false, false) => "held",
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td><a href=\"/runs/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{state}</td></tr>",
                Esc(&f.fault_id),
                Esc(&f.agent),
                url_part(&f.run),
                Esc(&f.run),
                Esc(&f.actor),
                duration(i64::try_from(f.lease_left.as_millis()).unwrap_or(i64::MAX)),
                duration(i64::try_from(f.renewed_for.as_millis()).unwrap_or(i64::MAX)),
            );
        }
        out.push_str("</tbody></table>");
    }
    let total = listed.len();
    let _ = write!(out, "<h2>Agents ({total})</h2>");
    let skip = (page - 1) * AGENTS_PER_PAGE;
    if total == 0 {
        out.push_str("<p class=\"empty\">No agent has connected yet.</p>");
    } else {
        out.push_str(
            "<table id=\"agents\"><thead><tr><th>Agent</th><th>Host</th><th>Health</th><th>Labels</th>\
             <th>Capabilities</th><th>Last heartbeat</th><th>Active faults</th><th>Version</th><th>Peer</th>\
             </tr></thead><tbody>",
        );
        for a in listed.iter().skip(skip).take(AGENTS_PER_PAGE) {
            let labels: Vec<String> =
                a.info.labels.iter().map(|(k, v)| format!("<code>{}={}</code>", Esc(k), Esc(v))).collect();
            let _ = write!(
                out,
                "<tr data-agent=\"{id}\"><td>{id}</td><td>{host}</td><td><span class=\"health h-{health}\">\
                 {health}</span></td><td>{labels}</td><td>{caps}</td><td>{seen} ago</td><td>{faults}</td>\
                 <td>{version}</td><td>{peer}</td></tr>",
                id = Esc(&a.info.id),
                host = Esc(&a.info.hostname),
                health = a.health.as_str(),
                labels = labels.join(" "),
                caps = Esc(&a.info.capabilities.join(", ")),
                seen = duration(now - a.last_seen_ms),
                faults = a.active_faults,
                version = Esc(&a.info.version),
                peer = Esc(&a.info.peer),
            );
        }
        out.push_str("</tbody></table><nav class=\"pages\">");
        if page > 1 {
            let _ = write!(out, "<a rel=\"prev\" href=\"/agents?page={}\">Previous</a> ", page - 1);
        }
        let _ = write!(out, "<span>page {page}</span>");
        if total > skip + AGENTS_PER_PAGE {
            let _ = write!(out, " <a rel=\"next\" href=\"/agents?page={}\">Next</a>", page + 1);
        }
        out.push_str("</nav>");
    }
    Ok(frame(&console, &authed, "Agents", "agents").render(&out))
}

// === schedules ===

/// `GET /schedules`: each schedule with its next firings (windows and blackout dates applied, as the scheduler
/// computes them).
pub async fn schedules(
    State(console): State<Arc<Console>>,
    authed: Authed,
) -> Result<Html<String>, ConsoleError> {
    let listed = console.api.store.call(|s| s.schedules()).await?;
    let mut out = String::new();
    if listed.is_empty() {
        out.push_str(
            "<p class=\"empty\">No schedules. Create one with <code>chaos schedule create</code>.</p>",
        );
    } else {
        out.push_str(
            "<table id=\"schedules\"><thead><tr><th>Name</th><th>Experiment</th><th>Cron</th><th>Time zone</th>\
             <th>Windows</th><th>Blackout dates</th><th>Next firings</th><th>Last fired</th><th>Created by</th>\
             </tr></thead><tbody>",
        );
        for s in &listed {
            schedule_row(&mut out, s);
        }
        out.push_str("</tbody></table>");
    }
    Ok(frame(&console, &authed, "Schedules", "schedules").render(&out))
}

fn schedule_row(out: &mut String, s: &ScheduleRecord) {
    let next = match Timing::parse(&s.cron, &s.timezone, &s.windows, &s.blackout_dates) {
        Ok(timing) => {
            let mut at = chrono::Utc::now();
            let mut firings = Vec::new();
            while firings.len() < NEXT_FIRINGS {
                let Some(next) = timing.next_after(at) else { break };
                firings.push(format!("<li>{}</li>", utc(next.timestamp_millis())));
                at = next;
            }
            if firings.is_empty() {
                "<span class=\"empty\">never</span>".to_string()
            } else {
                format!("<ul>{}</ul>", firings.join(""))
            }
        }
        Err(e) => format!("<span class=\"error\">{}</span>", Esc(&e)),
    };
    let list = |items: &[String]| {
        if items.is_empty() {
            "any".to_string()
        } else {
            items.iter().map(|i| Esc(i).to_string()).collect::<Vec<_>>().join(", ")
        }
    };
    let last = match (&s.last_fire_ms, &s.last_run_id) {
        (Some(at), Some(run)) => {
            format!("{} (<a href=\"/runs/{}\">{}</a>)", utc(*at), url_part(run), Esc(run))
        }
        (Some(at), None) => format!("{} (skipped)", utc(*at)),
        (None, _) => "never".to_string(),
    };
    let blackouts = if s.blackout_dates.is_empty() { "none".to_string() } else { list(&s.blackout_dates) };
    let _ = write!(
        out,
        "<tr data-schedule=\"{name}\"><td>{name}</td><td>{exp}</td><td><code>{cron}</code></td><td>{tz}</td>\
         <td>{windows}</td><td>{blackouts}</td><td>{next}</td><td>{last}</td><td>{by}</td></tr>",
        name = Esc(&s.name),
        exp = Esc(&s.experiment_id),
        cron = Esc(&s.cron),
        tz = Esc(&s.timezone),
        windows = list(&s.windows),
        by = Esc(&s.created_by),
    );
}

// === audit ===

#[derive(serde::Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    run: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
}

/// `GET /audit?run=&actor=&action=`: the newest [`AUDIT_LIMIT`] entries (about `run` when given), filtered
/// by actor and action (exact matches).
pub async fn audit(
    State(console): State<Arc<Console>>,
    authed: Authed,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Html<String>, ConsoleError> {
    let q = query(q)?;
    let (run, actor, action) = (
        bounded("run", q.run.trim())?,
        bounded("actor", q.actor.trim())?,
        bounded("action", q.action.trim())?,
    );
    let run_filter = (!run.is_empty()).then(|| run.to_string());
    let entries = console.api.store.call(move |s| s.audit(AUDIT_LIMIT, run_filter.as_deref())).await?;
    let shown: Vec<&AuditRecord> = entries
        .iter()
        .filter(|e| actor.is_empty() || e.entry.actor == actor)
        .filter(|e| action.is_empty() || e.entry.action == action)
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "<form class=\"filters\" method=\"get\" action=\"/audit\">\
         <label>Run <input name=\"run\" value=\"{}\" maxlength=\"{MAX_FIELD}\"></label> \
         <label>Actor <input name=\"actor\" value=\"{}\" maxlength=\"{MAX_FIELD}\"></label> \
         <label>Action <input name=\"action\" value=\"{}\" maxlength=\"{MAX_FIELD}\"></label> \
         <button type=\"submit\">Filter</button></form>",
        Esc(run),
        Esc(actor),
        Esc(action)
    );
    let _ = write!(
        out,
        "<p class=\"hint\">{} of the newest {} entries{}.</p>",
        shown.len(),
        entries.len(),
        if run.is_empty() { String::new() } else { format!(" about run {}", Esc(run)) }
    );
    if !shown.is_empty() {
        out.push_str(
            "<table id=\"audit\"><thead><tr><th>#</th><th>When</th><th>Actor</th><th>Action</th><th>Agent</th>\
             <th>Run</th><th>Fault</th><th>Detail</th></tr></thead><tbody>",
        );
        for AuditRecord { seq, entry: e } in shown {
            let run = e.run_id.as_deref().unwrap_or("");
            let run_link = if run.is_empty() {
                String::new()
            } else {
                format!("<a href=\"/runs/{}\">{}</a>", url_part(run), Esc(run))
            };
            let _ = write!(
                out,
                "<tr data-action=\"{action}\"><td>{seq}</td><td>{at}</td><td>{actor}</td><td>{action}</td>\
                 <td>{agent}</td><td>{run_link}</td><td>{fault}</td><td>{detail}</td></tr>",
                at = utc(e.at_ms),
                actor = Esc(&e.actor),
                action = Esc(&e.action),
                agent = Esc(e.agent_id.as_deref().unwrap_or("")),
                fault = Esc(e.fault_id.as_deref().unwrap_or("")),
                detail = Esc(&e.detail),
            );
        }
        out.push_str("</tbody></table>");
    }
    Ok(frame(&console, &authed, "Audit log", "audit").render(&out))
}
