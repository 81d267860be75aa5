//! The Chaos Toolkit journal (`journal.json`, reference §15): the shape chaostoolkit-lib 1.44 writes, so
//! chaostoolkit-reporting and other journal consumers read ours. `chaoslib-version` says `1.44.0` (the
//! semantics this runner follows); `chaos-version` says which `chaos` wrote it.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// The chaostoolkit-lib version whose semantics (and journal) this runner reproduces.
pub const CHAOSLIB_VERSION: &str = "1.44.0";

/// A run's status (`completed` is written when nothing else was set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Completed,
    Failed,
    Aborted,
    Interrupted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Aborted => "aborted",
            Status::Interrupted => "interrupted",
        }
    }
}

/// One activity's run record.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// The activity as written (refs resolved, `${…}` not substituted).
    pub activity: Value,
    pub output: Value,
    pub start: DateTime<Utc>,
    /// `None` for an activity cut short by an interrupt.
    pub succeeded: Option<bool>,
    /// Set on failure: the exception lines.
    pub exception: Option<Vec<String>>,
    pub end: DateTime<Utc>,
    /// Hypothesis probes only.
    pub tolerance_met: Option<bool>,
}

impl RunRecord {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("activity".into(), self.activity.clone());
        m.insert("output".into(), self.output.clone());
        m.insert("start".into(), Value::String(iso(self.start)));
        if let Some(ok) = self.succeeded {
            m.insert("status".into(), Value::String(if ok { "succeeded" } else { "failed" }.into()));
        }
        if let Some(lines) = &self.exception {
            m.insert("exception".into(), Value::from(lines.clone()));
        }
        m.insert("end".into(), Value::String(iso(self.end)));
        m.insert("duration".into(), Value::from(seconds(self.start, self.end)));
        if let Some(met) = self.tolerance_met {
            m.insert("tolerance_met".into(), Value::Bool(met));
        }
        Value::Object(m)
    }
}

/// A steady-state hypothesis result.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    pub met: Option<bool>,
    pub probes: Vec<RunRecord>,
    /// A probe failed (as opposed to missing its tolerance): not journaled, it decides the status.
    pub errored: bool,
}

impl State {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("steady_state_met".into(), self.met.map_or(Value::Null, Value::Bool));
        m.insert("probes".into(), Value::Array(self.probes.iter().map(RunRecord::to_json).collect()));
        Value::Object(m)
    }
}

/// The whole journal of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Journal {
    /// The experiment as loaded (title substituted, `dry` added, overrides not applied).
    pub experiment: Value,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub status: Status,
    pub deviated: bool,
    pub before: Option<State>,
    pub after: Option<State>,
    pub during: Vec<State>,
    pub run: Vec<RunRecord>,
    pub rollbacks: Vec<RunRecord>,
    /// The native verdict of `extensions: chaos` (`{verdict, reasons, slos, journal}`), when the experiment has
    /// one: written under the key `chaos`, which Chaos Toolkit's journal does not have.
    pub chaos: Option<Value>,
}

impl Journal {
    /// The journal as Chaos Toolkit writes it.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("chaoslib-version".into(), Value::String(CHAOSLIB_VERSION.into()));
        m.insert("chaos-version".into(), Value::String(env!("CARGO_PKG_VERSION").into()));
        m.insert("platform".into(), Value::String(platform()));
        m.insert("node".into(), Value::String(hostname()));
        m.insert("experiment".into(), self.experiment.clone());
        m.insert("start".into(), Value::String(iso(self.start)));
        m.insert("status".into(), Value::String(self.status.as_str().into()));
        m.insert("deviated".into(), Value::Bool(self.deviated));
        let mut states = Map::new();
        states.insert("before".into(), self.before.as_ref().map_or(Value::Null, State::to_json));
        states.insert("after".into(), self.after.as_ref().map_or(Value::Null, State::to_json));
        states.insert("during".into(), Value::Array(self.during.iter().map(State::to_json).collect()));
        m.insert("steady_states".into(), Value::Object(states));
        m.insert("run".into(), Value::Array(self.run.iter().map(RunRecord::to_json).collect()));
        m.insert("rollbacks".into(), Value::Array(self.rollbacks.iter().map(RunRecord::to_json).collect()));
        m.insert("end".into(), Value::String(iso(self.end)));
        m.insert("duration".into(), Value::from(seconds(self.start, self.end)));
        if let Some(chaos) = &self.chaos {
            m.insert("chaos".into(), chaos.clone());
        }
        Value::Object(m)
    }

    /// The exit code: 0 completed and not deviated (and, with `extensions: chaos`, the native verdict passed), 3
    /// interrupted, 1 otherwise (deviated, failed, aborted, the native verdict not passed).
    pub fn exit_code(&self) -> u8 {
        let native_passed =
            self.chaos.as_ref().is_none_or(|c| c.get("verdict").and_then(Value::as_str) == Some("passed"));
        match self.status {
            Status::Interrupted => 3,
            Status::Completed if !self.deviated && native_passed => 0,
            _ => 1,
        }
    }

    /// Writes the journal (`indent=2`, UTF-8), creating missing parent directories.
    pub fn write(&self, path: &std::path::Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(&self.to_json()).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }
}

/// Now, as a journal time.
pub fn now() -> DateTime<Utc> {
    DateTime::<Utc>::from(SystemTime::now())
}

/// Python's `datetime.isoformat()` of an aware UTC time: microseconds (omitted when zero, as Python
/// does) and `+00:00`.
pub fn iso(t: DateTime<Utc>) -> String {
    if t.timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

fn seconds(start: DateTime<Utc>, end: DateTime<Utc>) -> f64 {
    (end - start).num_microseconds().map_or(0.0, |us| us as f64 / 1e6)
}

/// `platform.platform()`-like: `Linux-<release>-<machine>`.
fn platform() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("Linux-{}-{}", release.trim(), std::env::consts::ARCH)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}
