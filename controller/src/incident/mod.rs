//! Incidents (issue 16), as pure data and rules, no I/O: [`Severity`] (sev1 worst .. sev4), [`Status`] and
//! the transitions it allows, [`Incident`] with its append-only [`Entry`] timeline, the changes people make
//! ([`Change`], applied by [`Incident::apply`], each refusal saying why) and the times measured from it (time
//! to detect, acknowledge, recover). [`stats`] aggregates those times over a period, [`from_run`] builds the
//! incident a failed run opens, [`report`] renders the blameless review. The store keeps incidents (its
//! `IncidentStore` part); the controller's `IncidentService` is the only caller that changes them.
//!
//! Lifecycle: `investigating → identified → monitoring → resolved`. Any forward move is allowed (skipping
//! states too); `monitoring` may go back to `investigating` or `identified` when the fix does not hold;
//! nothing leaves `resolved` but an explicit reopen (back to `investigating`, its resolved time cleared).

pub mod from_run;
pub mod report;
pub mod stats;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest title.
pub const MAX_TITLE: usize = 256;
/// The longest note, root cause or action item.
pub const MAX_TEXT: usize = 8192;
/// The longest name of a person or a service.
pub const MAX_NAME: usize = 128;
/// The most responders, services or action items one incident holds.
pub const MAX_ITEMS: usize = 64;

/// How bad: `sev1` is the worst. Parsed case-insensitively (`sev3`, `SEV3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Sev1,
    Sev2,
    Sev3,
    Sev4,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::Sev1, Severity::Sev2, Severity::Sev3, Severity::Sev4];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Sev1 => "sev1",
            Severity::Sev2 => "sev2",
            Severity::Sev3 => "sev3",
            Severity::Sev4 => "sev4",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Severity, String> {
        let lower = s.trim().to_ascii_lowercase();
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str() == lower)
            .ok_or_else(|| format!("unknown severity {s:?}: expected sev1 (worst), sev2, sev3 or sev4"))
    }
}

/// Where the response is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Something is wrong; the cause is not known yet.
    Investigating,
    /// The cause is known; a fix is under way.
    Identified,
    /// A fix is in; watching that it holds.
    Monitoring,
    /// Over. Only an explicit reopen leaves it.
    Resolved,
}

impl Status {
    pub const ALL: [Status; 4] =
        [Status::Investigating, Status::Identified, Status::Monitoring, Status::Resolved];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Investigating => "investigating",
            Status::Identified => "identified",
            Status::Monitoring => "monitoring",
            Status::Resolved => "resolved",
        }
    }

    /// Whether `self → to` is allowed, and why not. `reopen` allows `resolved → investigating` only.
    pub fn check_transition(self, to: Status, reopen: bool) -> Result<(), String> {
        use Status::*;
        if reopen {
            return match (self, to) {
                (Resolved, Investigating) => Ok(()),
                (Resolved, _) => Err(format!("a reopened incident goes back to investigating, not to {to}")),
                _ => Err(format!("only a resolved incident can be reopened; this one is {self}")),
            };
        }
        match (self, to) {
            (from, to) if from == to => Err(format!("the incident is already {to}")),
            (Resolved, _) => Err(format!(
                "the incident is resolved: nothing leaves resolved except a reopen (back to investigating), \
                 not a move to {to}"
            )),
            (from, to) if to > from => Ok(()),
            (Monitoring, Investigating | Identified) => Ok(()),
            (from, to) => Err(format!(
                "an incident may not go back from {from} to {to}: only monitoring may return to investigating \
                 or identified, when the fix does not hold"
            )),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Status, String> {
        let lower = s.trim().to_ascii_lowercase();
        Status::ALL.into_iter().find(|st| st.as_str() == lower).ok_or_else(|| {
            format!("unknown status {s:?}: expected investigating, identified, monitoring or resolved")
        })
    }
}

/// What a timeline entry records. Stored by its snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Opened,
    Status,
    Severity,
    Note,
    Ack,
    Commander,
    Responder,
    Service,
    Title,
    RootCause,
    ActionItem,
    LinkedRun,
    FaultInjected,
    SloBreach,
    Guardrail,
    FaultsReverted,
    Recovered,
    Resolved,
    Reopened,
}

impl EntryKind {
    pub const ALL: [EntryKind; 19] = [
        EntryKind::Opened,
        EntryKind::Status,
        EntryKind::Severity,
        EntryKind::Note,
        EntryKind::Ack,
        EntryKind::Commander,
        EntryKind::Responder,
        EntryKind::Service,
        EntryKind::Title,
        EntryKind::RootCause,
        EntryKind::ActionItem,
        EntryKind::LinkedRun,
        EntryKind::FaultInjected,
        EntryKind::SloBreach,
        EntryKind::Guardrail,
        EntryKind::FaultsReverted,
        EntryKind::Recovered,
        EntryKind::Resolved,
        EntryKind::Reopened,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Opened => "opened",
            EntryKind::Status => "status",
            EntryKind::Severity => "severity",
            EntryKind::Note => "note",
            EntryKind::Ack => "ack",
            EntryKind::Commander => "commander",
            EntryKind::Responder => "responder",
            EntryKind::Service => "service",
            EntryKind::Title => "title",
            EntryKind::RootCause => "root_cause",
            EntryKind::ActionItem => "action_item",
            EntryKind::LinkedRun => "linked_run",
            EntryKind::FaultInjected => "fault_injected",
            EntryKind::SloBreach => "slo_breach",
            EntryKind::Guardrail => "guardrail",
            EntryKind::FaultsReverted => "faults_reverted",
            EntryKind::Recovered => "recovered",
            EntryKind::Resolved => "resolved",
            EntryKind::Reopened => "reopened",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntryKind {
    type Err = String;
    fn from_str(s: &str) -> Result<EntryKind, String> {
        EntryKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown timeline entry kind {s:?}"))
    }
}

/// One line of an incident's timeline. Entries are only ever appended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Wall clock, ms since the Unix epoch: when it happened (for entries from a run, when the run saw it).
    pub at_ms: i64,
    /// Who: a person (the API principal), or `chaos` for what a run recorded.
    pub author: String,
    pub kind: EntryKind,
    pub text: String,
}

/// Something to do after the incident.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionItem {
    pub text: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub done: bool,
}

/// One incident. `timeline` and `runs` are kept apart by the store and filled in when read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub status: Status,
    /// When the failure began (ms since the Unix epoch).
    pub started_ms: i64,
    /// When it was noticed (an alert, a breach, a person); `None` until then.
    #[serde(default)]
    pub detected_ms: Option<i64>,
    /// When someone took it on.
    #[serde(default)]
    pub acknowledged_ms: Option<i64>,
    #[serde(default)]
    pub acknowledged_by: Option<String>,
    #[serde(default)]
    pub resolved_ms: Option<i64>,
    #[serde(default)]
    pub commander: Option<String>,
    #[serde(default)]
    pub responders: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub root_cause: Option<String>,
    #[serde(default)]
    pub action_items: Vec<ActionItem>,
    /// Who opened it (a person, or `run:ID`).
    pub opened_by: String,
    /// The runs linked to it, in the order they were linked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<String>,
    /// Oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Entry>,
}

/// A change to the people, services, severity, title, root cause or action items (`UpdateIncident`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    pub title: Option<String>,
    pub severity: Option<Severity>,
    /// `Some("")` clears it.
    pub commander: Option<String>,
    pub add_responders: Vec<String>,
    pub remove_responders: Vec<String>,
    pub add_services: Vec<String>,
    pub remove_services: Vec<String>,
    pub root_cause: Option<String>,
    pub add_action_items: Vec<ActionItem>,
    /// 1-based positions of action items now done.
    pub done_action_items: Vec<usize>,
}

/// A change someone makes to an open (or resolved) incident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Someone took it on: sets the acknowledged time (once).
    Ack {
        note: Option<String>,
    },
    /// A move of the status (`resolved` is [`Change::Resolve`]); `reopen` takes a resolved one back.
    Status {
        to: Status,
        reopen: bool,
        note: Option<String>,
    },
    Note(String),
    Resolve {
        root_cause: Option<String>,
        note: Option<String>,
    },
    Update(Update),
    LinkRun(String),
}

/// Why a change was refused: the reason, in words (FAILED_PRECONDITION or INVALID_ARGUMENT at the API).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The change is not allowed in the incident's state.
    #[error("{0}")]
    State(String),
    /// The change itself is malformed (empty, too long, a position out of range).
    #[error("{0}")]
    Invalid(String),
}

/// A text field checked against its bound: not empty after trimming, at most `max` bytes.
pub fn check_text(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if text.len() > max {
        return Err(format!("{what} is {} bytes long; at most {max} are allowed", text.len()));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(format!("{what} has a control character"));
    }
    Ok(())
}

/// A name (person, service) checked: 1 to [`MAX_NAME`] bytes, one line.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    check_text(what, name, MAX_NAME)?;
    if name.contains(['\n', '\t']) {
        return Err(format!("{what} {name:?} must be one line"));
    }
    Ok(())
}

/// A list of names checked: each a name, at most [`MAX_ITEMS`] of them.
pub fn check_names(what: &str, names: &[String]) -> Result<(), String> {
    if names.len() > MAX_ITEMS {
        return Err(format!("{} {what}s given; at most {MAX_ITEMS} are allowed", names.len()));
    }
    names.iter().try_for_each(|n| check_name(what, n))
}

/// What a new incident starts from (`OpenIncident`, or a failed run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opening {
    pub title: String,
    pub severity: Severity,
    pub started_ms: i64,
    pub detected_ms: Option<i64>,
    pub commander: Option<String>,
    pub responders: Vec<String>,
    pub services: Vec<String>,
    /// The first note (what was seen), if any.
    pub summary: Option<String>,
}

impl Incident {
    /// A new incident `id` opened at `now_ms` by `author`, with its `opened` timeline entry (and one for the
    /// summary). `started_ms` after `now_ms`, or a detection before the start, are refused.
    pub fn open(id: String, o: Opening, now_ms: i64, author: &str) -> Result<Incident, Refused> {
        let invalid = Refused::Invalid;
        check_text("the title", &o.title, MAX_TITLE).map_err(invalid)?;
        if o.title.contains('\n') {
            return Err(Refused::Invalid("the title must be one line".into()));
        }
        if let Some(c) = &o.commander {
            check_name("the commander", c).map_err(invalid)?;
        }
        check_names("responder", &o.responders).map_err(invalid)?;
        check_names("service", &o.services).map_err(invalid)?;
        if let Some(s) = &o.summary {
            check_text("the summary", s, MAX_TEXT).map_err(invalid)?;
        }
        if o.started_ms > now_ms {
            return Err(Refused::Invalid("the incident's start is in the future".into()));
        }
        if let Some(d) = o.detected_ms
            && d < o.started_ms
        {
            return Err(Refused::Invalid("the incident was detected before it started".into()));
        }
        let mut text = format!("opened as {} by {author}: {}", o.severity, o.title);
        if !o.services.is_empty() {
            text.push_str(&format!(" (services: {})", o.services.join(", ")));
        }
        let mut timeline =
            vec![Entry { at_ms: now_ms, author: author.into(), kind: EntryKind::Opened, text }];
        if let Some(s) = &o.summary {
            timeline.push(Entry {
                at_ms: now_ms,
                author: author.into(),
                kind: EntryKind::Note,
                text: s.clone(),
            });
        }
        Ok(Incident {
            id,
            title: o.title,
            severity: o.severity,
            status: Status::Investigating,
            started_ms: o.started_ms,
            detected_ms: o.detected_ms,
            acknowledged_ms: None,
            acknowledged_by: None,
            resolved_ms: None,
            commander: o.commander,
            responders: dedup(o.responders),
            services: dedup(o.services),
            root_cause: None,
            action_items: Vec::new(),
            opened_by: author.into(),
            runs: Vec::new(),
            timeline,
        })
    }

    /// Time to detect: `started → detected`.
    pub fn time_to_detect_ms(&self) -> Option<i64> {
        self.detected_ms.map(|d| d - self.started_ms)
    }

    /// Time to acknowledge: `detected → acknowledged` (how long the detection waited for a person); `None`
    /// without both.
    pub fn time_to_acknowledge_ms(&self) -> Option<i64> {
        Some(self.acknowledged_ms? - self.detected_ms?)
    }

    /// Time to recover: `started → resolved`.
    pub fn time_to_recover_ms(&self) -> Option<i64> {
        self.resolved_ms.map(|r| r - self.started_ms)
    }

    /// Applies `change` made by `author` at `now_ms`: returns the timeline entries it adds (at least one), or
    /// why it is refused (then the incident is unchanged).
    pub fn apply(&mut self, change: &Change, now_ms: i64, author: &str) -> Result<Vec<Entry>, Refused> {
        let mut next = self.clone();
        let entries = next.apply_to_copy(change, now_ms, author)?;
        next.timeline.extend(entries.iter().cloned());
        *self = next;
        Ok(entries)
    }

    fn apply_to_copy(&mut self, change: &Change, now: i64, author: &str) -> Result<Vec<Entry>, Refused> {
        let mut out = Vec::new();
        let mut push = |kind: EntryKind, text: String| {
            out.push(Entry { at_ms: now, author: author.to_string(), kind, text });
        };
        let note_ok = |n: &Option<String>| -> Result<(), Refused> {
            n.as_deref().map_or(Ok(()), |t| check_text("the note", t, MAX_TEXT).map_err(Refused::Invalid))
        };
        match change {
            Change::Ack { note } => {
                note_ok(note)?;
                if self.status == Status::Resolved {
                    return Err(Refused::State(
                        "the incident is resolved: there is nothing to acknowledge".into(),
                    ));
                }
                if let (Some(at), Some(by)) = (self.acknowledged_ms, &self.acknowledged_by) {
                    return Err(Refused::State(format!(
                        "the incident was already acknowledged by {by} at {}",
                        crate::report::journal::format_rfc3339(ms_to_time(at))
                    )));
                }
                self.acknowledged_ms = Some(now);
                self.acknowledged_by = Some(author.to_string());
                // Acknowledging is noticing, for an incident nobody marked detected.
                if self.detected_ms.is_none() {
                    self.detected_ms = Some(now.max(self.started_ms));
                }
                push(EntryKind::Ack, note.clone().unwrap_or_else(|| format!("acknowledged by {author}")));
            }
            Change::Status { to: Status::Resolved, reopen: false, note } => {
                return self.apply_to_copy(
                    &Change::Resolve { root_cause: None, note: note.clone() },
                    now,
                    author,
                );
            }
            Change::Status { to, reopen, note } => {
                note_ok(note)?;
                self.status.check_transition(*to, *reopen).map_err(Refused::State)?;
                let from = self.status;
                self.status = *to;
                let suffix = note.as_ref().map(|n| format!(": {n}")).unwrap_or_default();
                if *reopen {
                    self.resolved_ms = None;
                    push(EntryKind::Reopened, format!("reopened ({from} → {to}){suffix}"));
                } else {
                    push(EntryKind::Status, format!("{from} → {to}{suffix}"));
                }
            }
            Change::Note(text) => {
                check_text("the note", text, MAX_TEXT).map_err(Refused::Invalid)?;
                push(EntryKind::Note, text.clone());
            }
            Change::Resolve { root_cause, note } => {
                note_ok(note)?;
                self.status.check_transition(Status::Resolved, false).map_err(Refused::State)?;
                if let Some(rc) = root_cause {
                    check_text("the root cause", rc, MAX_TEXT).map_err(Refused::Invalid)?;
                    self.root_cause = Some(rc.clone());
                    push(EntryKind::RootCause, rc.clone());
                }
                let from = self.status;
                self.status = Status::Resolved;
                self.resolved_ms = Some(now.max(self.started_ms));
                if self.detected_ms.is_none() {
                    self.detected_ms = self.resolved_ms;
                }
                let suffix = note.as_ref().map(|n| format!(": {n}")).unwrap_or_default();
                push(EntryKind::Resolved, format!("{from} → resolved{suffix}"));
            }
            Change::Update(u) => self.update(u, &mut push)?,
            Change::LinkRun(run) => {
                check_name("the run id", run).map_err(Refused::Invalid)?;
                if self.runs.contains(run) {
                    return Err(Refused::State(format!("run {run} is already linked to the incident")));
                }
                self.runs.push(run.clone());
                push(EntryKind::LinkedRun, format!("run {run} linked"));
            }
        }
        Ok(out)
    }

    fn update(&mut self, u: &Update, push: &mut impl FnMut(EntryKind, String)) -> Result<(), Refused> {
        let invalid = Refused::Invalid;
        let mut changed = false;
        if let Some(title) = &u.title {
            check_text("the title", title, MAX_TITLE).map_err(invalid)?;
            if *title != self.title {
                push(EntryKind::Title, format!("title: {} → {title}", self.title));
                self.title = title.clone();
                changed = true;
            }
        }
        if let Some(sev) = u.severity
            && sev != self.severity
        {
            push(EntryKind::Severity, format!("severity {} → {sev}", self.severity));
            self.severity = sev;
            changed = true;
        }
        if let Some(c) = &u.commander {
            let next = if c.is_empty() { None } else { Some(c.clone()) };
            if let Some(n) = &next {
                check_name("the commander", n).map_err(invalid)?;
            }
            if next != self.commander {
                let text = match &next {
                    Some(n) => format!("commander: {n}"),
                    None => "commander cleared".into(),
                };
                push(EntryKind::Commander, text);
                self.commander = next;
                changed = true;
            }
        }
        changed |=
            edit_list("responder", &mut self.responders, &u.add_responders, &u.remove_responders, |t| {
                push(EntryKind::Responder, t)
            })?;
        changed |= edit_list("service", &mut self.services, &u.add_services, &u.remove_services, |t| {
            push(EntryKind::Service, t)
        })?;
        if let Some(rc) = &u.root_cause {
            check_text("the root cause", rc, MAX_TEXT).map_err(invalid)?;
            if Some(rc) != self.root_cause.as_ref() {
                push(EntryKind::RootCause, rc.clone());
                self.root_cause = Some(rc.clone());
                changed = true;
            }
        }
        if self.action_items.len() + u.add_action_items.len() > MAX_ITEMS {
            return Err(Refused::Invalid(format!("an incident holds at most {MAX_ITEMS} action items")));
        }
        for item in &u.add_action_items {
            check_text("an action item", &item.text, MAX_TEXT).map_err(invalid)?;
            if let Some(o) = &item.owner {
                check_name("an action item's owner", o).map_err(invalid)?;
            }
            let owner = item.owner.as_ref().map(|o| format!(" (owner {o})")).unwrap_or_default();
            push(
                EntryKind::ActionItem,
                format!("action item {}: {}{owner}", self.action_items.len() + 1, item.text),
            );
            self.action_items.push(ActionItem { done: false, ..item.clone() });
            changed = true;
        }
        for &n in &u.done_action_items {
            let count = self.action_items.len();
            let item = n.checked_sub(1).and_then(|i| self.action_items.get_mut(i)).ok_or_else(|| {
                Refused::Invalid(format!("there is no action item {n}: the incident has {count}"))
            })?;
            if !item.done {
                item.done = true;
                push(EntryKind::ActionItem, format!("action item {n} done: {}", item.text));
                changed = true;
            }
        }
        if !changed {
            return Err(Refused::Invalid("nothing to change: every value given is the current one".into()));
        }
        Ok(())
    }
}

/// Adds and removes names in `list`; each change is one timeline entry through `push`. Whether it changed.
fn edit_list(
    what: &str,
    list: &mut Vec<String>,
    add: &[String],
    remove: &[String],
    mut push: impl FnMut(String),
) -> Result<bool, Refused> {
    check_names(what, add).map_err(Refused::Invalid)?;
    let mut changed = false;
    for name in remove {
        if let Some(i) = list.iter().position(|n| n == name) {
            list.remove(i);
            push(format!("{what} removed: {name}"));
            changed = true;
        } else {
            return Err(Refused::Invalid(format!("{name} is not a {what} of the incident")));
        }
    }
    for name in add {
        if !list.contains(name) {
            if list.len() >= MAX_ITEMS {
                return Err(Refused::Invalid(format!("an incident holds at most {MAX_ITEMS} {what}s")));
            }
            list.push(name.clone());
            push(format!("{what} added: {name}"));
            changed = true;
        }
    }
    Ok(changed)
}

fn dedup(names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// A Unix-ms time as a `SystemTime` (negative ones as the epoch).
pub fn ms_to_time(ms: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// An age written `90d`, `2w`, `12h`, `30m` or `45s` (for `stats --since`), in milliseconds.
pub fn parse_age(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: i64 =
        number.parse().map_err(|_| format!("expected an age like 90d, 2w, 12h or 30m, found {s:?}"))?;
    let unit_ms: i64 = match unit {
        "w" => 7 * 86_400_000,
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1000,
        "" => return Err(format!("an age needs a unit (w, d, h, m or s), found {s:?}")),
        other => return Err(format!("unknown unit {other:?} in {s:?}: use w, d, h, m or s")),
    };
    n.checked_mul(unit_ms).ok_or_else(|| format!("the age {s:?} is too long"))
}

/// A duration in ms for people: `950 ms`, `42 s`, `12 min 5 s`, `3 h 20 min`, `2 d 4 h`.
pub fn human_ms(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let s = ms / 1000;
    let text = match s {
        _ if ms < 1000 => format!("{ms} ms"),
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    };
    format!("{sign}{text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opening() -> Opening {
        Opening {
            title: "checkout errors".into(),
            severity: Severity::Sev2,
            started_ms: 1_000,
            detected_ms: Some(61_000),
            commander: Some("ana".into()),
            responders: vec!["bo".into(), "bo".into()],
            services: vec!["checkout".into()],
            summary: None,
        }
    }

    #[test]
    fn severities_parse_case_insensitively_and_say_what_is_expected() {
        assert_eq!("sev3".parse::<Severity>(), Ok(Severity::Sev3));
        assert_eq!("SEV1".parse::<Severity>(), Ok(Severity::Sev1));
        assert_eq!(" Sev4 ".parse::<Severity>(), Ok(Severity::Sev4));
        let err = "sev5".parse::<Severity>().unwrap_err();
        assert!(err.contains("sev1 (worst), sev2, sev3 or sev4"), "{err}");
        assert!(Severity::Sev1 < Severity::Sev4);
    }

    #[test]
    fn every_status_pair_is_allowed_or_refused_as_the_lifecycle_says() {
        use Status::*;
        let allowed = [
            (Investigating, Identified),
            (Investigating, Monitoring),
            (Investigating, Resolved),
            (Identified, Monitoring),
            (Identified, Resolved),
            (Monitoring, Resolved),
            (Monitoring, Investigating),
            (Monitoring, Identified),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                let got = from.check_transition(to, false);
                assert_eq!(got.is_ok(), allowed.contains(&(from, to)), "{from} → {to}: {got:?}");
            }
        }
        assert_eq!(
            Identified.check_transition(Identified, false),
            Err("the incident is already identified".into())
        );
        let back = Identified.check_transition(Investigating, false).unwrap_err();
        assert!(back.contains("may not go back from identified to investigating"), "{back}");
        let resolved = Resolved.check_transition(Monitoring, false).unwrap_err();
        assert!(resolved.contains("nothing leaves resolved except a reopen"), "{resolved}");
        assert!(Resolved.check_transition(Investigating, true).is_ok());
        assert!(Monitoring.check_transition(Investigating, true).unwrap_err().contains("only a resolved"));
    }

    #[test]
    fn times_to_detect_acknowledge_and_recover_are_differences_of_the_recorded_times() {
        let mut inc = Incident::open("inc-1".into(), opening(), 70_000, "ana").unwrap();
        assert_eq!(inc.responders, ["bo"], "duplicates are dropped");
        assert_eq!(inc.time_to_detect_ms(), Some(60_000));
        assert_eq!(inc.time_to_acknowledge_ms(), None);
        inc.apply(&Change::Ack { note: None }, 181_000, "bo").unwrap();
        assert_eq!(inc.time_to_acknowledge_ms(), Some(120_000));
        let again = inc.apply(&Change::Ack { note: None }, 190_000, "cy").unwrap_err();
        assert!(
            again
                .to_string()
                .starts_with("the incident was already acknowledged by bo at 1970-01-01T00:03:01")
        );
        inc.apply(&Change::Status { to: Status::Identified, reopen: false, note: None }, 200_000, "ana")
            .unwrap();
        let resolve = Change::Resolve { root_cause: Some("pool too small".into()), note: None };
        inc.apply(&resolve, 3_601_000, "ana").unwrap();
        assert_eq!(inc.time_to_recover_ms(), Some(3_600_000));
        assert_eq!(inc.root_cause.as_deref(), Some("pool too small"));
        let kinds: Vec<EntryKind> = inc.timeline.iter().map(|e| e.kind).collect();
        let expected =
            [EntryKind::Opened, EntryKind::Ack, EntryKind::Status, EntryKind::RootCause, EntryKind::Resolved];
        assert_eq!(kinds, expected);
        assert!(inc.timeline.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    }

    #[test]
    fn a_refused_change_leaves_the_incident_as_it_was() {
        let mut inc = Incident::open("inc-1".into(), opening(), 70_000, "ana").unwrap();
        inc.apply(&Change::Resolve { root_cause: None, note: None }, 80_000, "ana").unwrap();
        let before = inc.clone();
        let err =
            inc.apply(&Change::Status { to: Status::Monitoring, reopen: false, note: None }, 90_000, "x");
        assert!(matches!(err, Err(Refused::State(_))), "{err:?}");
        assert!(inc.apply(&Change::Ack { note: None }, 90_000, "x").is_err());
        let u = Update { done_action_items: vec![3], ..Update::default() };
        let err = inc.apply(&Change::Update(u), 90_000, "x").unwrap_err();
        assert_eq!(err.to_string(), "there is no action item 3: the incident has 0");
        assert_eq!(inc, before);
        inc.apply(&Change::Status { to: Status::Investigating, reopen: true, note: None }, 95_000, "x")
            .unwrap();
        assert_eq!((inc.status, inc.resolved_ms), (Status::Investigating, None));
    }

    #[test]
    fn updates_record_one_entry_per_change_and_refuse_an_empty_one() {
        let mut inc = Incident::open("inc-1".into(), opening(), 70_000, "ana").unwrap();
        let u = Update {
            severity: Some(Severity::Sev1),
            commander: Some("cy".into()),
            add_responders: vec!["dee".into()],
            remove_responders: vec!["bo".into()],
            add_services: vec!["payments".into()],
            add_action_items: vec![ActionItem {
                text: "alert on pool".into(),
                owner: Some("bo".into()),
                done: true,
            }],
            ..Update::default()
        };
        let entries = inc.apply(&Change::Update(u), 80_000, "ana").unwrap();
        assert_eq!(entries.len(), 6, "{entries:?}");
        assert_eq!(inc.severity, Severity::Sev1);
        assert_eq!(inc.responders, ["dee"]);
        assert_eq!(inc.services, ["checkout", "payments"]);
        assert!(!inc.action_items[0].done, "a new action item starts open");
        let done = Update { done_action_items: vec![1], ..Update::default() };
        inc.apply(&Change::Update(done), 81_000, "bo").unwrap();
        assert!(inc.action_items[0].done);
        let same = Update { severity: Some(Severity::Sev1), ..Update::default() };
        let err = inc.apply(&Change::Update(same), 82_000, "bo").unwrap_err();
        assert!(err.to_string().starts_with("nothing to change"), "{err}");
    }

    #[test]
    fn openings_are_checked() {
        let mut o = opening();
        o.detected_ms = Some(0);
        let err = Incident::open("i".into(), o, 70_000, "a").unwrap_err();
        assert_eq!(err.to_string(), "the incident was detected before it started");
        let mut o = opening();
        o.title = "x".repeat(MAX_TITLE + 1);
        assert!(Incident::open("i".into(), o, 70_000, "a").unwrap_err().to_string().contains("at most 256"));
        let mut o = opening();
        o.started_ms = 80_000;
        assert!(Incident::open("i".into(), o, 70_000, "a").is_err());
    }

    #[test]
    fn ages_and_durations_read_and_print() {
        assert_eq!(parse_age("90d"), Ok(90 * 86_400_000));
        assert_eq!(parse_age("2w"), Ok(14 * 86_400_000));
        assert_eq!(parse_age("30m"), Ok(1_800_000));
        assert!(parse_age("90").unwrap_err().contains("needs a unit"));
        assert!(parse_age("5y").unwrap_err().contains("unknown unit"));
        assert_eq!(human_ms(950), "950 ms");
        assert_eq!(human_ms(725_000), "12 min 5 s");
        assert_eq!(human_ms(12_000_000), "3 h 20 min");
    }
}
