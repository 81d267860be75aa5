//! HTTP/1.1 keep-alive requests/s and p50/p99 latency, load from wrk: direct to a small in-process hyper
//! backend, through `chaos proxy` in `http` mode (no toxics, and with an `http_abort` toxic matching 0% of
//! requests), and through HAProxy in `mode http`. Budget: chaos ≥ 0.8× HAProxy's requests/s.
//!
//! The backend is hyper on a single-threaded runtime of its own thread inside this process, so it costs the
//! same CPU in every case. The cases interleave round by round (A B C D, A B C D, …) so that a change in
//! background load hits all of them alike; each round's run follows a short wrk warm-up.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::chaos::{self, ChaosServer};
use crate::haproxy::{self, Haproxy};
use crate::profile::Profile;

/// wrk's threads and connections (`-t`, `-c`).
pub const WRK_THREADS: usize = 1;
pub const WRK_CONNS: usize = 50;
/// What the backend answers `GET /` with.
pub const BODY: &[u8] = b"ok";
/// Candidate locations when `wrk` is not on `PATH`.
const WRK_FALLBACK_PATHS: [&str; 2] = ["/usr/bin/wrk", "/usr/local/bin/wrk"];
/// Bound on one wrk process beyond its duration (start-up, the latency report) before it is killed.
const WRK_SLACK: Duration = Duration::from_secs(15);
/// The two `http` proxies on the chaos server: without toxics, and with the toxic that never fires.
const PROXY_PLAIN: &str = "bench_http";
const PROXY_FAULT: &str = "bench_http_fault";

/// The way wrk reaches the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    /// Straight to the backend.
    Direct,
    /// Through a `chaos proxy` http proxy without toxics.
    Chaos,
    /// Through a `chaos proxy` http proxy holding an `http_abort` toxic that matches 0% of requests.
    ChaosFault,
    /// Through HAProxy in `mode http`: the baseline of the budget.
    Haproxy,
}

impl Case {
    /// Every case, in the order of each round.
    pub const ALL: [Case; 4] = [Self::Direct, Self::Chaos, Self::ChaosFault, Self::Haproxy];

    pub fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Chaos => "chaos, no toxics",
            Self::ChaosFault => "chaos, http_abort at 0%",
            Self::Haproxy => "haproxy (mode http)",
        }
    }
}

/// wrk's socket errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SocketErrors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
}

impl SocketErrors {
    fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// One wrk run, as wrk reported it.
#[derive(Debug, Clone, Serialize)]
pub struct WrkRun {
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Requests completed in the run.
    pub requests: u64,
    /// Responses with an error status (wrk's "Non-2xx or 3xx responses", which counts statuses ≥ 400).
    pub non_2xx: u64,
    pub socket_errors: SocketErrors,
}

impl WrkRun {
    /// Error responses and socket errors together.
    pub fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors.total()
    }
}

/// One case over every round.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub case: Case,
    /// Each round's run, in order.
    pub runs: Vec<WrkRun>,
    /// The run with the median requests/s, or the error that stopped the case.
    pub median: Result<WrkRun, String>,
}

impl Row {
    /// Error responses and socket errors summed over every run.
    pub fn errors(&self) -> (u64, SocketErrors) {
        self.runs.iter().fold((0, SocketErrors::default()), |(n, s), r| {
            let e = r.socket_errors;
            (
                n + r.non_2xx,
                SocketErrors {
                    connect: s.connect + e.connect,
                    read: s.read + e.read,
                    write: s.write + e.write,
                    timeout: s.timeout + e.timeout,
                },
            )
        })
    }

    /// Error responses and socket errors of every run, all together.
    pub fn error_count(&self) -> u64 {
        self.runs.iter().map(WrkRun::errors).sum()
    }

    /// Median requests/s, when the case completed.
    pub fn requests_per_sec(&self) -> Option<f64> {
        self.median.as_ref().ok().map(|r| r.requests_per_sec)
    }
}

/// The whole `http` benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct HttpResult {
    pub rows: Vec<Row>,
    /// Versions of wrk, chaos and HAProxy, for the report header.
    pub versions: Vec<(String, String)>,
    /// Whether this benchmark's chaos server died (its stderr log is then kept).
    #[serde(skip)]
    pub chaos_died: bool,
}

impl HttpResult {
    pub fn row(&self, case: Case) -> Option<&Row> {
        self.rows.iter().find(|r| r.case == case)
    }
}

/// Runs every case `profile.http_rounds` times, interleaved. Fails only when wrk or the backend is missing; a
/// proxy that cannot start leaves its rows with the error and the other cases are still measured. Every
/// child (wrk, `chaos proxy`, HAProxy) is killed when this returns, on every path.
pub async fn run(chaos_bin: &Path, work_dir: &Path, profile: &Profile) -> Result<HttpResult> {
    let wrk = find_wrk()?;
    let dir = work_dir.join("http");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let backend = Backend::start()?;
    let upstream = backend.addr();
    eprintln!("http: hyper backend on {upstream}");
    let mut versions = vec![("wrk".to_string(), wrk_version(&wrk))];

    let mut chaos = start_chaos(chaos_bin, &dir, upstream).await;
    match &chaos {
        Ok(c) => {
            eprintln!(
                "  chaos: admin http://{}, proxies {} and {} (0% abort)",
                c.server.admin(),
                c.plain,
                c.fault
            );
            let v = c.server.version().await.unwrap_or_else(|| "?".to_string());
            versions.push(("chaos".to_string(), format!("{} (`GET /version`: {v})", chaos_bin.display())));
        }
        Err(e) => eprintln!("  error: chaos: {e:#}"),
    }
    let haproxy = match haproxy::find_binary() {
        Ok(bin) => {
            let v = haproxy::version(&bin).unwrap_or_else(|| "?".to_string());
            versions.push((
                "haproxy, mode http".to_string(),
                format!("{v} (`http` benchmark: keep-alive, http-reuse always, default threads)"),
            ));
            Haproxy::start_http(&bin, &dir, upstream).await
        }
        Err(e) => Err(e),
    };
    match &haproxy {
        Ok(h) => eprintln!("  haproxy (mode http) on {}", h.listen()),
        Err(e) => eprintln!("  error: haproxy: {e:#}"),
    }

    let addr = |case: Case| -> Result<SocketAddr, String> {
        let err = |e: &anyhow::Error| format!("{e:#}");
        match case {
            Case::Direct => Ok(upstream),
            Case::Chaos => chaos.as_ref().map(|c| c.plain).map_err(err),
            Case::ChaosFault => chaos.as_ref().map(|c| c.fault).map_err(err),
            Case::Haproxy => haproxy.as_ref().map(Haproxy::listen).map_err(err),
        }
    };
    let mut cases: Vec<(Case, SocketAddr, Result<Vec<WrkRun>, String>)> = Vec::new();
    for case in Case::ALL {
        match addr(case) {
            Ok(a) => {
                // One request first, so that a broken path fails with its answer rather than as wrk's errors.
                let first = check(a).await.map(|()| Vec::new()).map_err(|e| format!("{e:#}"));
                if let Err(e) = &first {
                    eprintln!("  error: {}: {e}", case.label());
                }
                cases.push((case, a, first));
            }
            Err(e) => cases.push((case, upstream, Err(e))),
        }
    }
    for round in 0..profile.http_rounds {
        for (case, addr, acc) in &mut cases {
            let Ok(runs) = acc else { continue };
            eprintln!("http: {}, round {}/{}", case.label(), round + 1, profile.http_rounds);
            let mut result = measure(&wrk, *addr, profile).await;
            if matches!(case, Case::Chaos | Case::ChaosFault)
                && let Ok(c) = &mut chaos
                && let Err(e) = c.server.check_alive()
            {
                result = Err(e);
            }
            match result {
                Ok(r) => {
                    eprintln!(
                        "  {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs{}",
                        r.requests_per_sec,
                        r.p50_us,
                        r.p99_us,
                        if r.errors() > 0 {
                            format!(", {}", errors_text(r.non_2xx, r.socket_errors))
                        } else {
                            String::new()
                        }
                    );
                    runs.push(r);
                }
                Err(e) => {
                    eprintln!("  error: {e:#}");
                    *acc = Err(format!("{e:#}"));
                }
            }
        }
    }
    let chaos_died = chaos.as_mut().is_ok_and(|c| c.server.check_alive().is_err());
    let rows = cases
        .into_iter()
        .map(|(case, _, acc)| match acc {
            Ok(runs) => {
                let median = median_run(&runs).cloned().ok_or_else(|| "no run completed".to_string());
                Row { case, runs, median }
            }
            Err(e) => Row { case, runs: Vec::new(), median: Err(e) },
        })
        .collect();
    Ok(HttpResult { rows, versions, chaos_died })
}

/// "N non-2xx; socket errors: connect N, read N, write N, timeout N" without the zero counts; "0" if all are.
pub fn errors_text(non_2xx: u64, socket: SocketErrors) -> String {
    let mut parts = Vec::new();
    if non_2xx > 0 {
        parts.push(format!("{non_2xx} non-2xx"));
    }
    if socket.total() > 0 {
        let kinds = [
            ("connect", socket.connect),
            ("read", socket.read),
            ("write", socket.write),
            ("timeout", socket.timeout),
        ];
        let listed: Vec<String> =
            kinds.into_iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k} {n}")).collect();
        parts.push(format!("socket errors: {}", listed.join(", ")));
    }
    if parts.is_empty() { "0".to_string() } else { parts.join("; ") }
}

/// The run with the median requests/s (the lower middle one for an even count).
fn median_run(runs: &[WrkRun]) -> Option<&WrkRun> {
    let mut sorted: Vec<&WrkRun> = runs.iter().collect();
    sorted.sort_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec));
    sorted.get(sorted.len().checked_sub(1)? / 2).copied()
}

/// The chaos server of this benchmark and its two `http` proxies; the server is killed on drop.
struct Chaos {
    server: ChaosServer,
    plain: SocketAddr,
    fault: SocketAddr,
}

/// Spawns `chaos proxy` (stderr in `dir`) with two `http` proxies in front of `upstream`, the second holding
/// an `http_abort` toxic whose `percentage` is 0: every request is matched against it and none is faulted.
async fn start_chaos(bin: &Path, dir: &Path, upstream: SocketAddr) -> Result<Chaos> {
    let server = ChaosServer::spawn(bin, dir)?;
    let plain = server.create_http_proxy(PROXY_PLAIN, upstream).await?;
    let fault = server.create_http_proxy(PROXY_FAULT, upstream).await?;
    let never =
        json!({"name": "never", "type": "http_abort", "attributes": {"status": 503, "percentage": 0}});
    server.add_toxic(PROXY_FAULT, &never).await.context("add the 0% http_abort toxic")?;
    Ok(Chaos { server, plain, fault })
}

/// One `GET /` (connection close) must answer 200 with the backend's body.
async fn check(addr: SocketAddr) -> Result<()> {
    let (status, body) =
        chaos::http(addr, "GET", "/", None).await.with_context(|| format!("GET http://{addr}/"))?;
    if status != 200 || body.as_bytes() != BODY {
        bail!(
            "GET http://{addr}/ answered {status} {body:?}, expected 200 {:?}",
            String::from_utf8_lossy(BODY)
        );
    }
    Ok(())
}

/// A wrk warm-up (discarded) then the measured wrk run against `http://addr/`. A run in which no request
/// completed is an error.
async fn measure(wrk: &Path, addr: SocketAddr, profile: &Profile) -> Result<WrkRun> {
    let url = format!("http://{addr}/");
    wrk_run(wrk, &url, profile.http_warmup).await.context("wrk warm-up")?;
    let run = wrk_run(wrk, &url, profile.http_duration).await?;
    if run.requests == 0 {
        bail!("wrk completed no request ({})", errors_text(run.non_2xx, run.socket_errors));
    }
    Ok(run)
}

/// `wrk --latency -t1 -c50 -dNs URL`, killed if it overruns its duration by [`WRK_SLACK`].
async fn wrk_run(wrk: &Path, url: &str, duration: Duration) -> Result<WrkRun> {
    let secs = duration.as_secs().max(1);
    let child = tokio::process::Command::new(wrk)
        .arg("--latency")
        .arg(format!("-t{WRK_THREADS}"))
        .arg(format!("-c{WRK_CONNS}"))
        .arg(format!("-d{secs}s"))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {}", wrk.display()))?;
    let out = tokio::time::timeout(Duration::from_secs(secs) + WRK_SLACK, child.wait_with_output())
        .await
        .map_err(|_| {
            anyhow!(
                "wrk did not finish within {} s (killed)",
                (Duration::from_secs(secs) + WRK_SLACK).as_secs()
            )
        })?
        .context("wait for wrk")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk exited with {}: {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_wrk(&stdout).with_context(|| format!("wrk output:\n{stdout}"))
}

/// Finds wrk or explains how to install it.
fn find_wrk() -> Result<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("wrk")).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path.into_iter().chain(WRK_FALLBACK_PATHS.iter().map(PathBuf::from)).find(|p| p.is_file()).context(
        "wrk not found (the load generator of the http benchmark): install it with `apt-get install -y wrk`",
    )
}

/// `wrk -v`'s first line without the copyright (best effort; wrk exits non-zero after printing it).
fn wrk_version(bin: &Path) -> String {
    std::process::Command::new(bin)
        .arg("-v")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(|l| l.split(" Copyright").next().unwrap_or(l).trim().to_string()))
        .unwrap_or_else(|| "?".to_string())
}

/// Parses wrk's report: `Requests/sec:`, the `50%` and `99%` lines of `--latency`'s distribution, the
/// request count, and the error lines wrk prints only when there were errors.
fn parse_wrk(text: &str) -> Result<WrkRun> {
    let (mut rps, mut p50, mut p99, mut requests) = (None, None, None, None);
    let mut non_2xx = 0;
    let mut socket_errors = SocketErrors::default();
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = Some(v.trim().parse::<f64>().with_context(|| format!("bad Requests/sec in {line:?}"))?);
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = Some(parse_time_us(v.trim())?);
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = Some(parse_time_us(v.trim())?);
        } else if let Some((n, _)) = line.split_once(" requests in ") {
            requests =
                Some(n.trim().parse::<u64>().with_context(|| format!("bad request count in {line:?}"))?);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().with_context(|| format!("bad error count in {line:?}"))?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            for part in v.split(',') {
                let (kind, n) = part.trim().split_once(' ').with_context(|| format!("bad {line:?}"))?;
                let n: u64 = n.trim().parse().with_context(|| format!("bad count in {line:?}"))?;
                match kind {
                    "connect" => socket_errors.connect = n,
                    "read" => socket_errors.read = n,
                    "write" => socket_errors.write = n,
                    "timeout" => socket_errors.timeout = n,
                    _ => bail!("unknown socket error kind {kind:?} in {line:?}"),
                }
            }
        }
    }
    Ok(WrkRun {
        requests_per_sec: rps.context("no `Requests/sec:` line")?,
        p50_us: p50.context("no `50%` latency line (was --latency passed?)")?,
        p99_us: p99.context("no `99%` latency line (was --latency passed?)")?,
        requests: requests.context("no `N requests in` line")?,
        non_2xx,
        socket_errors,
    })
}

/// A wrk duration such as `512.34us`, `1.20ms`, `2.00s` or `1.50m`, in microseconds.
fn parse_time_us(text: &str) -> Result<f64> {
    let split =
        text.find(|c: char| c.is_ascii_alphabetic()).with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.trim().parse().with_context(|| format!("bad number in {text:?}"))?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => bail!("unknown time unit {unit:?} in {text:?}"),
    };
    // wrk prints two decimals: drop the float noise of the scaling (8.06 ms is 8060 µs, not 8060.000…01).
    Ok((value * scale * 100.0).round() / 100.0)
}

/// The HTTP/1.1 backend: hyper on a single-threaded tokio runtime of its own thread, answering `GET /` with
/// [`BODY`] and keeping connections alive. Stopped (its connections closed) and joined on drop.
struct Backend {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    fn start() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("http backend runtime")?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").context("http backend bind")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(std_listener).context("http backend listener")?
        };
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("http-backend".to_string())
            .spawn(move || runtime.block_on(serve(listener, stopped)))
            .context("spawn the http backend thread")?;
        Ok(Self { addr, stop: Some(stop), thread: Some(thread) })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts until `stop` fires; dropping the runtime afterwards drops every connection task.
async fn serve(listener: TcpListener, mut stop: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        // Errors only mean that the peer went away, which ends the connection anyway.
                        let _ = http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), service_fn(answer))
                            .await;
                    });
                }
                // Typically EMFILE; back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
        }
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/" {
        return Ok(Response::new(Full::new(Bytes::from_static(BODY))));
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NOT_FOUND;
    Ok(response)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CLEAN: &str = "Running 2s test @ http://127.0.0.1:8080/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.34us  100.12us   5.00ms   90.00%
    Req/Sec    95.12k     3.21k  100.00k    80.00%
  Latency Distribution
     50%  500.00us
     75%  550.00us
     90%  600.00us
     99%    1.25ms
  190000 requests in 2.00s, 15.00MB read
Requests/sec:  95000.50
Transfer/sec:      7.50MB
";

    #[test]
    fn parses_a_clean_run() {
        let r = parse_wrk(CLEAN).unwrap();
        assert!((r.requests_per_sec - 95000.5).abs() < 1e-9);
        assert!((r.p50_us - 500.0).abs() < 1e-9);
        assert!((r.p99_us - 1250.0).abs() < 1e-9);
        assert_eq!(r.requests, 190_000);
        assert_eq!(r.errors(), 0);
        assert_eq!(errors_text(r.non_2xx, r.socket_errors), "0");
    }

    #[test]
    fn parses_errors_and_units() {
        let text = CLEAN.replace("     99%    1.25ms", "     99%    2.00s").replace(
            "Requests/sec:",
            "  Socket errors: connect 0, read 3, write 0, timeout 7\n  \
                 Non-2xx or 3xx responses: 12\nRequests/sec:",
        );
        let r = parse_wrk(&text).unwrap();
        assert!((r.p99_us - 2e6).abs() < 1e-6);
        assert_eq!(r.non_2xx, 12);
        assert_eq!(r.socket_errors, SocketErrors { connect: 0, read: 3, write: 0, timeout: 7 });
        assert_eq!(r.errors(), 22);
        assert_eq!(errors_text(r.non_2xx, r.socket_errors), "12 non-2xx; socket errors: read 3, timeout 7");
        assert!(parse_wrk("Requests/sec: 1.0\n").is_err());
        assert!(parse_time_us("3.00xs").is_err());
        assert!((parse_time_us("1.50m").unwrap() - 90e6).abs() < 1e-3);
    }

    #[test]
    fn median_is_the_middle_run() {
        let run = |rps: f64| WrkRun {
            requests_per_sec: rps,
            p50_us: rps,
            p99_us: 0.0,
            requests: 1,
            non_2xx: 0,
            socket_errors: SocketErrors::default(),
        };
        let runs = [run(3.0), run(1.0), run(2.0)];
        assert!((median_run(&runs).unwrap().p50_us - 2.0).abs() < 1e-9);
        assert!((median_run(&runs[..1]).unwrap().p50_us - 3.0).abs() < 1e-9);
        assert!(median_run(&[]).is_none());
    }

    #[test]
    fn http_haproxy_config_is_accepted() {
        // Only when haproxy is installed: `haproxy -c` validates the generated configuration.
        let Ok(bin) = haproxy::find_binary() else { return };
        let dir = std::env::temp_dir().join(format!("chaos-bench-http-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("haproxy-http.cfg");
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        std::fs::write(&cfg, haproxy::http_config(a, a)).unwrap();
        let out = std::process::Command::new(bin).arg("-c").arg("-f").arg(&cfg).output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
