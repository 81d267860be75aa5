//! Python providers: `{type: python, module, func, arguments, secrets}` run by the host's Python through the
//! driver this binary ships (`driver.py`, embedded), so installed extensions (chaostoolkit-toxiproxy,
//! chaostoolkit-prometheus, ...) work as they do under Chaos Toolkit.
//!
//! One driver process per run (`python -u -c <driver.py>`), started at the first request, speaking JSON lines:
//! requests on its stdin, responses on a private copy of its stdout (user code printing to stdout writes to its
//! stderr, which goes to `tracing`). Each request runs on a driver thread of its own, so background activities
//! run side by side. A call that outlives its timeout fails; if the driver then no longer answers a ping (the
//! call holds the interpreter), the driver is killed and the next request starts a new one. Lines both ways are
//! bounded ([`MAX_LINE`]).

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

use super::ActivityFailure;

/// The driver's source, run with `python -c`.
pub const DRIVER: &str = include_str!("driver.py");

/// The longest line read from or written to the driver (a request, a response, a stderr line is cut there).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// The environment variable naming the interpreter when `--python` is not given.
pub const PYTHON_ENV: &str = "CHAOS_PYTHON";

/// How long the driver has to answer a ping after a call timed out before it is deemed hung and restarted.
const PING_DEADLINE: Duration = Duration::from_secs(2);

/// How many of the driver's last stderr lines a failure quotes when the driver dies.
const STDERR_TAIL: usize = 20;

/// One call of a python provider, its arguments already `${}`-substituted.
#[derive(Debug)]
pub struct PythonCall<'a> {
    pub module: &'a str,
    pub func: &'a str,
    pub arguments: Map<String, Value>,
    /// The resolved configuration: passed as `configuration=` when the function declares it. A function may
    /// change it (chaostoolkit-toxiproxy's `create_proxy` stores `<name>_PORT`): the changes are written back.
    pub configuration: &'a mut Map<String, Value>,
    /// The secrets of the scopes the provider names, merged: passed as `secrets=` when declared.
    pub secrets: Map<String, Value>,
    pub timeout: Option<Duration>,
}

/// The host's Python, driving calls for one run. Cloning shares the driver (the controls use the same one).
#[derive(Clone, Debug)]
pub struct Python {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    interpreter: PathBuf,
    env: Vec<(OsString, OsString)>,
    driver: tokio::sync::Mutex<Option<Arc<Driver>>>,
}

/// A running driver process.
#[derive(Debug)]
struct Driver {
    child: Mutex<Option<Child>>,
    /// `None` once [`Driver::stop`] closed it (the driver's end of file).
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

/// Requests awaiting their response; `closed` once the driver's stdout ended (with why).
#[derive(Debug, Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Map<String, Value>>>,
    closed: Option<String>,
}

/// Why a request got no response.
#[derive(Debug)]
pub(super) enum RequestError {
    /// The driver could not be started, died, or broke the protocol.
    Driver(String),
    /// No response within the call's timeout.
    Timeout(Duration),
}

impl Default for Python {
    /// The interpreter named by `CHAOS_PYTHON`, else `python3` from `PATH`.
    fn default() -> Python {
        Python::from_env()
    }
}

impl Python {
    /// A driver run by `interpreter` (a path, or a name looked up on `PATH`), started at the first request.
    pub fn new(interpreter: impl Into<PathBuf>) -> Python {
        Python {
            inner: Arc::new(Inner {
                interpreter: interpreter.into(),
                env: Vec::new(),
                driver: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Sets an environment variable of the driver (on top of this process' environment), e.g. `PYTHONPATH` or
    /// a `--var-file` `.env` entry. Only before the driver starts: clones made earlier keep the old setting.
    pub fn with_env(self, key: impl Into<OsString>, value: impl Into<OsString>) -> Python {
        let mut env = self.inner.env.clone();
        env.push((key.into(), value.into()));
        Python {
            inner: Arc::new(Inner {
                interpreter: self.inner.interpreter.clone(),
                env,
                driver: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// `--python PATH` when given, else `CHAOS_PYTHON`, else `python3`.
    pub fn from_option(interpreter: Option<&Path>) -> Python {
        match interpreter {
            Some(path) => Python::new(path),
            None => Python::from_env(),
        }
    }

    /// The interpreter named by `CHAOS_PYTHON`, else `python3`.
    pub fn from_env() -> Python {
        match std::env::var_os(PYTHON_ENV) {
            Some(path) if !path.is_empty() => Python::new(path),
            _ => Python::new("python3"),
        }
    }

    /// The interpreter this driver runs with.
    pub fn interpreter(&self) -> &Path {
        &self.inner.interpreter
    }

    /// Starts the driver now (it otherwise starts at the first request) and checks that it answers: the reason
    /// when the interpreter is missing or cannot run the driver.
    pub async fn start(&self) -> Result<(), String> {
        let driver = self.driver().await?;
        match driver.request(json!({"op": "ping"}), Some(Duration::from_secs(30))).await {
            Ok(_) => Ok(()),
            Err(RequestError::Driver(why)) => Err(why),
            Err(RequestError::Timeout(_)) => {
                self.restart(&driver).await;
                Err(format!(
                    "{} did not answer the driver's first ping within 30s",
                    self.inner.interpreter.display()
                ))
            }
        }
    }

    /// Stops the driver (closing its stdin ends it; it is killed if it lingers).
    pub async fn shutdown(&self) {
        let driver = self.inner.driver.lock().await.take();
        if let Some(driver) = driver {
            driver.stop().await;
        }
    }

    /// Runs one call: its return value, or the exception it raised (every exception, `InterruptExecution`
    /// included, is an activity failure, as chaoslib's `run_python_activity` makes it). The configuration as
    /// the function left it is written back into `call.configuration`.
    pub async fn call(&self, call: PythonCall<'_>) -> Result<Value, ActivityFailure> {
        let what = format!("{}.{}", call.module, call.func);
        let mut request = json!({
            "op": "call",
            "module": call.module,
            "func": call.func,
            "arguments": call.arguments,
            "configuration": *call.configuration,
        });
        if !call.secrets.is_empty() {
            request["secrets"] = Value::Object(call.secrets);
        }
        let mut response = match self.request(request, call.timeout).await {
            Ok(response) => response,
            Err(RequestError::Timeout(after)) => {
                return Err(ActivityFailure::new(format!(
                    "chaoslib.exceptions.ActivityFailed: python activity {what} took too long (more than {}s)\n",
                    after.as_secs_f64()
                )));
            }
            Err(RequestError::Driver(why)) => {
                return Err(ActivityFailure::new(format!(
                    "chaoslib.exceptions.ActivityFailed: python activity {what}: {why}\n"
                )));
            }
        };
        if let Some(Value::Object(configuration)) = response.remove("configuration") {
            *call.configuration = configuration;
        }
        if let Some(exception) = response.remove("exception") {
            return Err(ActivityFailure { exception: lines(exception) });
        }
        match response.remove("ok") {
            Some(value) => Ok(value),
            None => Err(ActivityFailure::new(format!(
                "chaoslib.exceptions.ActivityFailed: python activity {what}: the driver answered {}\n",
                Value::Object(response)
            ))),
        }
    }

    /// Checks at validation time that `module` imports and `func` binds `arguments` (Chaos Toolkit's
    /// validation does the same); the reason when it does not.
    pub async fn validate(
        &self,
        module: &str,
        func: &str,
        arguments: &Map<String, Value>,
    ) -> Result<(), String> {
        self.validate_activity(module, func, arguments, "activity", &format!("{module}.{func}")).await
    }

    /// [`Python::validate`] naming the activity in the reason as chaoslib does (`kind` is `probe` or `action`).
    pub async fn validate_activity(
        &self,
        module: &str,
        func: &str,
        arguments: &Map<String, Value>,
        kind: &str,
        name: &str,
    ) -> Result<(), String> {
        let request = json!({
            "op": "validate", "module": module, "func": func, "arguments": arguments, "type": kind, "name": name,
        });
        let mut response =
            self.request(request, Some(Duration::from_secs(60))).await.map_err(|e| match e {
                RequestError::Driver(why) => format!("python provider {module}.{func}: {why}"),
                RequestError::Timeout(_) => {
                    format!("python provider {module}.{func}: importing the module took over 60s")
                }
            })?;
        match response.remove("invalid") {
            Some(Value::String(reason)) => Err(reason),
            Some(other) => Err(other.to_string()),
            None if response.contains_key("ok") => Ok(()),
            None => Err(format!(
                "python provider {module}.{func}: the driver answered {}",
                Value::Object(response)
            )),
        }
    }

    /// Sends one request to the driver (starting it when needed) and waits for its response.
    pub(super) async fn request(
        &self,
        request: Value,
        timeout: Option<Duration>,
    ) -> Result<Map<String, Value>, RequestError> {
        let driver = self.driver().await.map_err(RequestError::Driver)?;
        let result = driver.request(request, timeout).await;
        match &result {
            Err(RequestError::Timeout(_)) => {
                // The call may still run on its thread; a driver that no longer answers is replaced.
                if driver.request(json!({"op": "ping"}), Some(PING_DEADLINE)).await.is_err() {
                    tracing::warn!(
                        target: "chaos::ctk::python",
                        "the python driver is not answering after a timed-out call; restarting it"
                    );
                    self.restart(&driver).await;
                }
            }
            Err(RequestError::Driver(_)) => self.restart(&driver).await,
            Ok(_) => {}
        }
        result
    }

    /// The running driver, started when there is none.
    async fn driver(&self) -> Result<Arc<Driver>, String> {
        let mut slot = self.inner.driver.lock().await;
        if let Some(driver) = slot.as_ref()
            && driver.alive()
        {
            return Ok(driver.clone());
        }
        let driver = Arc::new(Driver::spawn(&self.inner.interpreter, &self.inner.env)?);
        *slot = Some(driver.clone());
        Ok(driver)
    }

    /// Kills `driver` and forgets it, unless another request already replaced it.
    async fn restart(&self, driver: &Arc<Driver>) {
        let mut slot = self.inner.driver.lock().await;
        if slot.as_ref().is_some_and(|d| Arc::ptr_eq(d, driver)) {
            *slot = None;
        }
        drop(slot);
        driver.kill();
    }
}

impl Driver {
    fn spawn(interpreter: &Path, env: &[(OsString, OsString)]) -> Result<Driver, String> {
        let mut child = Command::new(interpreter)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("-u")
            .arg("-c")
            .arg(DRIVER)
            .env("PYTHONUNBUFFERED", "1")
            .env("CHAOS_PYTHON_MAX_LINE", MAX_LINE.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the python driver with {}: {e}", interpreter.display()))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the python driver's pipes are missing".to_string());
        };
        let pending = Arc::new(Mutex::new(Pending::default()));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        tracing::debug!(target: "chaos::ctk::python", pid = child.id(), interpreter = %interpreter.display(), "python driver started");
        let (stderr_done, stderr_ended) = oneshot::channel();
        tokio::spawn(read_responses(BufReader::new(stdout), pending.clone(), stderr_ended));
        tokio::spawn(log_stderr(BufReader::new(stderr), stderr_tail.clone(), stderr_done));
        Ok(Driver {
            child: Mutex::new(Some(child)),
            stdin: tokio::sync::Mutex::new(Some(stdin)),
            pending,
            next_id: AtomicU64::new(1),
            stderr_tail,
        })
    }

    fn alive(&self) -> bool {
        self.pending.lock().map(|p| p.closed.is_none()).unwrap_or(false)
            && self.child.lock().map(|c| c.is_some()).unwrap_or(false)
    }

    async fn request(
        &self,
        mut request: Value,
        timeout: Option<Duration>,
    ) -> Result<Map<String, Value>, RequestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request["id"] = json!(id);
        let mut line = serde_json::to_vec(&request).map_err(|e| RequestError::Driver(e.to_string()))?;
        if line.len() > MAX_LINE {
            return Err(RequestError::Driver(format!(
                "the request is {} bytes, more than the driver's limit of {MAX_LINE}",
                line.len()
            )));
        }
        line.push(b'\n');
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().map_err(|_| RequestError::Driver("poisoned".into()))?;
            if let Some(why) = &pending.closed {
                return Err(RequestError::Driver(why.clone()));
            }
            pending.waiting.insert(id, tx);
        }
        let written = async {
            let mut stdin = self.stdin.lock().await;
            let Some(stdin) = stdin.as_mut() else {
                return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the driver was stopped"));
            };
            stdin.write_all(&line).await?;
            stdin.flush().await
        }
        .await;
        if let Err(e) = written {
            self.forget(id);
            return Err(RequestError::Driver(format!(
                "cannot write to the python driver: {e}{}",
                self.tail()
            )));
        }
        let answer = match timeout {
            Some(limit) => match tokio::time::timeout(limit, rx).await {
                Ok(answer) => answer,
                Err(_) => {
                    self.forget(id);
                    return Err(RequestError::Timeout(limit));
                }
            },
            None => rx.await,
        };
        answer.map_err(|_| {
            let why = self.pending.lock().ok().and_then(|p| p.closed.clone());
            RequestError::Driver(format!(
                "{}{}",
                why.unwrap_or_else(|| "the python driver exited".into()),
                self.tail()
            ))
        })
    }

    fn forget(&self, id: u64) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.waiting.remove(&id);
        }
    }

    /// The driver's last stderr lines, for a failure's message.
    fn tail(&self) -> String {
        let tail = self.stderr_tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>()).unwrap_or_default();
        if tail.is_empty() { String::new() } else { format!("; its last stderr lines: {}", tail.join(" | ")) }
    }

    fn kill(&self) {
        let child = self.child.lock().ok().and_then(|mut c| c.take());
        if let Some(mut child) = child {
            let _ = child.start_kill();
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
    }

    async fn stop(&self) {
        // Dropping the pipe's end closes it: the driver reads end of file and leaves (a shutdown() alone only
        // flushes a pipe, and the driver would wait out the timeout below).
        drop(self.stdin.lock().await.take());
        let child = self.child.lock().ok().and_then(|mut c| c.take());
        if let Some(mut child) = child
            && tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err()
        {
            let _ = child.kill().await;
        }
    }
}

/// Delivers each response line to the request it answers; when stdout ends (or breaks the protocol), fails every
/// waiting request.
async fn read_responses(
    mut stdout: impl AsyncBufRead + Unpin,
    pending: Arc<Mutex<Pending>>,
    stderr_ended: oneshot::Receiver<()>,
) {
    let why = loop {
        match read_line(&mut stdout, MAX_LINE).await {
            Ok(Some(Line::Complete(line))) => match serde_json::from_slice::<Map<String, Value>>(&line) {
                Ok(mut response) => {
                    let id = response.remove("id").and_then(|id| id.as_u64());
                    if let Some(error) = response.get("error") {
                        tracing::warn!(target: "chaos::ctk::python", %error, "python driver error");
                    }
                    let Some(id) = id else { continue };
                    let waiting = pending.lock().ok().and_then(|mut p| p.waiting.remove(&id));
                    if let Some(tx) = waiting {
                        let _ = tx.send(response);
                    }
                }
                Err(e) => break format!("the python driver wrote a line that is not a JSON object: {e}"),
            },
            Ok(Some(Line::TooLong)) => {
                break format!("the python driver wrote a line longer than {MAX_LINE} bytes");
            }
            Ok(None) => break "the python driver exited".to_string(),
            Err(e) => break format!("cannot read from the python driver: {e}"),
        }
    };
    // Let the stderr reader record the driver's last words (a traceback) for the failures' messages first.
    let _ = tokio::time::timeout(Duration::from_secs(1), stderr_ended).await;
    if let Ok(mut pending) = pending.lock() {
        pending.closed = Some(why);
        pending.waiting.clear();
    }
}

/// Logs the driver's stderr (user code's prints and logging, a crashed driver's traceback) line by line.
async fn log_stderr(
    mut stderr: impl AsyncBufRead + Unpin,
    tail: Arc<Mutex<VecDeque<String>>>,
    done: oneshot::Sender<()>,
) {
    const MAX_STDERR_LINE: usize = 64 * 1024;
    loop {
        match read_line(&mut stderr, MAX_STDERR_LINE).await {
            Ok(Some(Line::Complete(line))) => {
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                tracing::info!(target: "chaos::ctk::python", "{text}");
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(text);
                }
            }
            Ok(Some(Line::TooLong)) => {
                tracing::info!(target: "chaos::ctk::python", "(a stderr line longer than {MAX_STDERR_LINE} bytes, left out)")
            }
            Ok(None) | Err(_) => {
                let _ = done.send(());
                return;
            }
        }
    }
}

/// A line read with a bound.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// The line without its `\n`.
    Complete(Vec<u8>),
    /// Longer than the bound: skipped up to its end.
    TooLong,
}

/// Reads one line of at most `max` bytes; a longer one is skipped to its end and reported as [`Line::TooLong`].
/// `None` at end of input.
pub(crate) async fn read_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    max: usize,
) -> std::io::Result<Option<Line>> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if too_long {
                Some(Line::TooLong)
            } else if line.is_empty() {
                None
            } else {
                Some(Line::Complete(line))
            });
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(at) => (&buf[..at], Some(at + 1)),
            None => (buf, None),
        };
        if !too_long {
            if line.len() + chunk.len() > max {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(buf.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(if too_long { Line::TooLong } else { Line::Complete(line) }));
        }
    }
}

/// A response's exception lines (a list of strings; anything else becomes one line).
pub(super) fn lines(value: Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
        Value::String(s) => vec![s],
        other => vec![other.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_line_bounds_lines_and_skips_long_ones() {
        let input: &[u8] = b"short\n0123456789abcdef\nok\nlast";
        let mut reader = BufReader::with_capacity(4, input);
        assert_eq!(read_line(&mut reader, 8).await.unwrap(), Some(Line::Complete(b"short".to_vec())));
        assert_eq!(read_line(&mut reader, 8).await.unwrap(), Some(Line::TooLong));
        assert_eq!(read_line(&mut reader, 8).await.unwrap(), Some(Line::Complete(b"ok".to_vec())));
        assert_eq!(read_line(&mut reader, 8).await.unwrap(), Some(Line::Complete(b"last".to_vec())));
        assert_eq!(read_line(&mut reader, 8).await.unwrap(), None);
    }

    #[test]
    fn exception_lines_accept_lists_and_strings() {
        assert_eq!(lines(json!(["a\n", "b\n"])), vec!["a\n", "b\n"]);
        assert_eq!(lines(json!("one")), vec!["one"]);
    }
}
