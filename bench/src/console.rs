//! The web console's page time with a full store: 1,000 agents and 10,000 runs (each with a real run's journal),
//! served by an in-process controller (`Controller::bind` with `ui_listen` on 127.0.0.1:0, then `serve`), asked
//! over HTTP/1.1 on loopback with a logged-in session, one request at a time. The time is from sending the
//! request to the last byte of the page, so it is the console's server time plus a loopback round trip.
//!
//! Baselines in the same run, on the same controller: the login page (no store, no session: the HTTP stack's
//! floor), and the gRPC API reading the same data (`ListRuns` of 50, `ListAgents` of all) with the API token.
//!
//! The store is filled through the controller's own `StoreHandle` while it serves: a real run through the API
//! (6 s of load on a local server judged by two SLOs; its journal, with per-second signals, is the template), then 9,999 copies of that run with ids
//! and start times of their own, and 1,000 agent records (not connected: the page renders them all the same).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use bytes::Bytes;
use chaos_controller::server::{Controller, ControllerConfig};
use chaos_controller::store::{AgentRecord, RunRecord};
use chaos_proto::v1;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::stats::percentile;

/// How big the store is, and how many requests each page gets.
pub struct Sizes {
    pub agents: usize,
    pub runs: usize,
    pub requests: usize,
}

impl Sizes {
    pub fn new(quick: bool) -> Sizes {
        if quick {
            Sizes { agents: 1000, runs: 10_000, requests: 20 }
        } else {
            Sizes { agents: 1000, runs: 10_000, requests: 100 }
        }
    }
}

/// One page's (or API call's) times.
#[derive(Debug, Serialize)]
pub struct Row {
    pub what: String,
    pub items: String,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    pub bytes: usize,
}

#[derive(Debug, Serialize)]
pub struct ConsoleResults {
    pub agents: usize,
    pub runs: usize,
    pub requests: usize,
    pub journal_bytes: usize,
    pub fill_s: f64,
    pub rows: Vec<Row>,
}

/// The template run: 6 s of load on a local server judged by an SLO, so its journal holds per-second signals
/// as a real run's does.
fn experiment(target: SocketAddr) -> String {
    format!(
        "apiVersion: chaos/v1
title: Console benchmark template
load:
  - {{ name: users, http: {{ url: \"http://{target}/\" }}, rate: 50/s, timeout: 2s }}
slos:
  - {{ name: availability, signal: errors, objective: 99%, source: {{ load: users }} }}
  - {{ name: fast, signal: latency, threshold: 100ms, objective: 95%, source: {{ load: users }} }}
baseline: 2s
method:
  - {{ wait: 2s }}
recovery: 2s
"
    )
}

/// A local HTTP server answering 200 to everything (the template run's target).
async fn target() -> Result<SocketAddr> {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = service_fn(|_request: hyper::Request<hyper::body::Incoming>| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), answer));
        }
    });
    Ok(addr)
}

/// Fills a store, serves, and times each page.
pub async fn run(sizes: &Sizes) -> Result<ConsoleResults> {
    let dir = std::env::temp_dir().join(format!("chaos-bench-console-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = measure(sizes, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(sizes: &Sizes, dir: &std::path::Path) -> Result<ConsoleResults> {
    let config = ControllerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ui_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        data_dir: dir.to_path_buf(),
        ..ControllerConfig::default()
    };
    let controller = Controller::bind(config).await.map_err(|e| anyhow!("starting the controller: {e}"))?;
    let api_url = format!("http://{}", controller.local_addr);
    let ui = controller.ui_addr.context("the console is bound")?;
    let store = controller.api.store.clone();
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(controller.serve(shutdown.clone()));
    let token = std::fs::read_to_string(dir.join("api.token")).context("reading the API token")?;
    let token = token.split_whitespace().last().context("a token in api.token")?.to_string();
    let channel = chaos_proto::transport::channel(&chaos_proto::transport::ClientConfig {
        url: api_url,
        ..Default::default()
    })
    .await
    .context("connecting the API client")?;
    let mut api = v1::controller_service_client::ControllerServiceClient::with_interceptor(
        channel,
        chaos_proto::transport::WithToken::new(Some(&token))?,
    );

    // One real run: its record (journal included) is the template of the rest.
    let start = v1::StartRunRequest {
        experiment: Some(v1::start_run_request::Experiment::Submit(v1::SubmitExperimentRequest {
            source: experiment(target().await?),
            file: "bench.yaml".into(),
            vars: Default::default(),
        })),
        seed: Some(1),
        dry_run: false,
    };
    let first = api.start_run(start).await?.into_inner();
    let deadline = Instant::now() + Duration::from_secs(30);
    let template = loop {
        let id = first.id.clone();
        let run = store.call(move |s| s.run(&id)).await?.context("the first run is stored")?;
        if run.journal_json.is_some() {
            break run;
        }
        ensure!(Instant::now() < deadline, "the template run did not finish within 30 s");
        // Polling the store for the run's end: the run is 6 s long, a 100 ms poll costs nothing measured.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let journal_bytes = template.journal_json.as_ref().map_or(0, String::len);

    let filling = Instant::now();
    let (runs, agents) = (sizes.runs, sizes.agents);
    // The agents were last seen when the template run ended (a moment ago).
    let seen = template.finished_ms.unwrap_or(template.started_ms);
    store
        .call(move |s| {
            for i in 1..runs {
                let record = RunRecord {
                    id: format!("r-bench-{i:05}"),
                    started_ms: template.started_ms - i64::try_from(i).unwrap_or(0) * 60_000,
                    finished_ms: template.finished_ms.map(|f| f - i64::try_from(i).unwrap_or(0) * 60_000),
                    actor: if i % 3 == 0 { "schedule:nightly".into() } else { "ci".into() },
                    ..template.clone()
                };
                s.insert_run(&record)?;
            }
            for i in 0..agents {
                s.upsert_agent(&AgentRecord {
                    id: format!("agent-{i:04}"),
                    hostname: format!("host-{i:04}.bench"),
                    labels: BTreeMap::from([
                        ("role".to_string(), if i % 2 == 0 { "web" } else { "db" }.to_string()),
                        ("zone".to_string(), format!("z{}", i % 3)),
                    ]),
                    capabilities: vec!["process-kill".into(), "process-pause".into(), "cpu-stress".into()],
                    version: env!("CARGO_PKG_VERSION").into(),
                    boot_id: format!("boot-{i}"),
                    first_seen_ms: seen,
                    last_seen_ms: seen,
                    peer: format!("10.0.{}.{}:4242", i / 250, i % 250),
                })?;
            }
            Ok(())
        })
        .await?;
    let fill_s = filling.elapsed().as_secs_f64();

    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let base = format!("http://{ui}");
    let cookie = login(&http, &base, &token).await?;
    let mut rows = Vec::new();
    let pages: [(&str, String, String); 6] = [
        ("login page (baseline: no store)", "/login".into(), "-".into()),
        ("runs page", "/runs".into(), format!("50 of {runs} runs")),
        ("runs page 100", "/runs?page=100".into(), format!("reads {} runs", 100 * 50 + 1)),
        ("agents page", "/agents".into(), format!("200 of {agents} agents")),
        ("a run's page", "/runs/r-bench-05000".into(), "1 run".into()),
        ("a run's report", "/runs/r-bench-05000/report".into(), format!("{journal_bytes} B journal")),
    ];
    for (what, path, items) in pages {
        rows.push(time_page(&http, &base, &path, &cookie, sizes.requests, what, &items).await?);
    }
    // The API reading the same data.
    let mut times = Vec::new();
    for _ in 0..sizes.requests {
        let t = Instant::now();
        let listed = api.list_runs(v1::ListRunsRequest { limit: 50, state: String::new() }).await?;
        times.push(t.elapsed());
        ensure!(listed.into_inner().runs.len() == 50);
    }
    rows.push(row("gRPC ListRuns 50 (baseline)", "50 runs with journals", times, 0));
    let mut times = Vec::new();
    for _ in 0..sizes.requests {
        let t = Instant::now();
        let listed = api.list_agents(v1::ListAgentsRequest::default()).await?;
        times.push(t.elapsed());
        ensure!(listed.into_inner().agents.len() == agents);
    }
    rows.push(row("gRPC ListAgents (baseline)", &format!("{agents} agents"), times, 0));

    shutdown.cancel();
    served.await?.map_err(|e| anyhow!("the controller: {e}"))?;
    Ok(ConsoleResults { agents, runs, requests: sizes.requests, journal_bytes, fill_s, rows })
}

async fn login(http: &Client<HttpConnector, Full<Bytes>>, base: &str, token: &str) -> Result<String> {
    let request = hyper::Request::post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!("token={token}"))))?;
    let response = http.request(request).await?;
    ensure!(response.status() == 303, "login: {}", response.status());
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("a session cookie")?;
    Ok(cookie.to_string())
}

async fn time_page(
    http: &Client<HttpConnector, Full<Bytes>>,
    base: &str,
    path: &str,
    cookie: &str,
    requests: usize,
    what: &str,
    items: &str,
) -> Result<Row> {
    let mut times = Vec::with_capacity(requests);
    let mut bytes = 0;
    for _ in 0..requests {
        let request = hyper::Request::get(format!("{base}{path}"))
            .header("cookie", cookie)
            .body(Full::new(Bytes::new()))?;
        let t = Instant::now();
        let response = http.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        times.push(t.elapsed());
        ensure!(status == 200, "{path}: {status}");
        bytes = body.len();
    }
    Ok(row(what, items, times, bytes))
}

fn row(what: &str, items: &str, mut times: Vec<Duration>, bytes: usize) -> Row {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Row {
        what: what.to_string(),
        items: items.to_string(),
        p50_ms: ms(percentile(&times, 50.0)),
        p95_ms: ms(percentile(&times, 95.0)),
        max_ms: ms(times.last().copied().unwrap_or_default()),
        bytes,
    }
}

/// The Markdown section.
pub fn render(r: &Result<ConsoleResults>) -> String {
    let mut out = String::from("\n## Web console: page time with a full store\n\n");
    let r = match r {
        Ok(r) => r,
        Err(e) => return format!("{out}failed: {e:#}\n"),
    };
    out.push_str(&format!(
        "{} agents and {} runs in the store (each run with a {} B journal; filled in {:.1} s); {} requests per \
         page, one at a time, over HTTP/1.1 on loopback with a session cookie. Time: request sent to last byte \
         read.\n\n| page | items | p50 | p95 | max | bytes |\n|---|---|---:|---:|---:|---:|\n",
        r.agents, r.runs, r.journal_bytes, r.fill_s, r.requests
    ));
    for row in &r.rows {
        out.push_str(&format!(
            "| {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {} |\n",
            row.what, row.items, row.p50_ms, row.p95_ms, row.max_ms, row.bytes
        ));
    }
    out
}
