//! Guardrails in a real run (`engine::execute`), judged against an independent count: a logging HTTP target
//! on port 0 records every request with its arrival time and answers as each test scripts it (503s, slow
//! answers, silence). Each test computes from the target's own log when a guardrail's condition first held
//! (the crossing) and asserts that the run aborted within one tick (1 s) plus a small slack of it.
//!
//! The same target judges the SLO windows of a `proxy` source: a real `chaos proxy` (in process, port 0) in
//! front of it, and the windows must count what the target's log says happened in each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaos_controller::engine::{self, Outcome, Plan, RunConfig, Verdict};
use chaos_controller::experiment;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The guardrails are checked once a second.
const TICK: Duration = Duration::from_secs(1);

/// Scheduling noise allowed on top of one tick (a shared, busy test machine).
const SLACK: Duration = Duration::from_millis(350);

// === the logging target ===

/// One request as the target saw it.
#[derive(Clone, Copy, Debug)]
struct Hit {
    arrived: Instant,
    /// When the target answered (arrival + the scripted delay).
    answered: Instant,
    status: u16,
}

/// What the target answers to a request that arrives `since_first` after the first one: status and delay.
type Script = dyn Fn(Duration) -> (u16, Duration) + Send + Sync;

struct Target {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Target {
    async fn start(script: impl Fn(Duration) -> (u16, Duration) + Send + Sync + 'static) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let first: Arc<std::sync::OnceLock<Instant>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let log = hits.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (script, log, first) = (script.clone(), log.clone(), first.clone());
                let service = service_fn(move |_: Request<Incoming>| {
                    let arrived = Instant::now();
                    let since_first = arrived.duration_since(*first.get_or_init(|| arrived));
                    let (status, delay) = script(since_first);
                    log.lock().unwrap().push(Hit { arrived, answered: arrived + delay, status });
                    async move {
                        tokio::time::sleep(delay).await;
                        let mut response = Response::new(String::new());
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Target { addr, hits }
    }

    fn hits(&self) -> Vec<Hit> {
        let mut hits = self.hits.lock().unwrap().clone();
        hits.sort_by_key(|h| h.arrived);
        hits
    }
}

// === running an experiment ===

struct Run {
    outcome: Outcome,
    /// Every progress line with the moment it was reported.
    progress: Vec<(Instant, String)>,
}

impl Run {
    /// When the line containing `what` was reported.
    fn when(&self, what: &str) -> Instant {
        self.progress
            .iter()
            .find(|(_, line)| line.contains(what))
            .unwrap_or_else(|| panic!("no progress line with {what:?}: {:#?}", self.progress))
            .0
    }

    /// When the guardrail tripped, and its reason.
    fn trip(&self) -> (Instant, String) {
        assert_eq!(self.outcome.verdict, Verdict::Failed, "{:#?}", self.outcome.reasons);
        let reason = self.outcome.reasons[0].clone();
        assert!(reason.starts_with("guardrail aborted the run: "), "{reason}");
        (self.when("guardrail: guardrail:"), reason)
    }
}

async fn run(target: &Target, load_extra: &str, slos: &str, method: &str, guardrails: &str) -> Run {
    let yaml = format!(
        "apiVersion: chaos/v1\ntitle: guardrails against a logging target\nhypothesis: the guardrails trip in \
         time\nload:\n  - {{ name: shoppers, http: {{ url: \"http://{}/\" }}, rate: 50/s{load_extra} }}\nslos:\n\
         {slos}\nbaseline: 2s\nmethod:\n{method}\nrecovery: 1s\nguardrails: {guardrails}\n",
        target.addr
    );
    run_yaml(&yaml, |_| {}).await
}

/// Runs `yaml`, calling `hook` with every progress line as it is reported.
async fn run_yaml(yaml: &str, hook: impl Fn(&str) + Send + Sync + 'static) -> Run {
    let exp = experiment::parse("live.yaml", yaml, &[]).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let plan = Plan::resolve(&exp, 1).await.unwrap();
    let lines: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let sink = lines.clone();
    let config = RunConfig {
        seed: 1,
        file: "live.yaml".into(),
        progress: Some(Arc::new(move |line| {
            let now = Instant::now();
            hook(&line);
            sink.lock().unwrap().push((now, line));
        })),
        stop_rollbacks: CancellationToken::new(),
    };
    let outcome = engine::execute(&exp, plan, &config, CancellationToken::new()).await;
    let progress = lines.lock().unwrap().clone();
    Run { outcome, progress }
}

/// Asserts that the trip came after the crossing (up to `early`: the engine stamps a request with its send
/// time, a little before the target saw it) and within one tick plus the slack of it.
fn assert_in_time(trip: Instant, crossing: Instant, early: Duration, what: &str) {
    assert!(trip + early >= crossing, "{what}: tripped {:?} before the crossing", crossing - trip);
    let late = trip.saturating_duration_since(crossing);
    eprintln!("{what}: tripped {late:?} after the crossing in the target's log");
    assert!(late <= TICK + SLACK, "{what}: tripped {late:?} after the crossing, allowed {:?}", TICK + SLACK);
}

/// The number after `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> u64 {
    let rest = &text[text.find(prefix).unwrap_or_else(|| panic!("no {prefix:?} in {text}")) + prefix.len()..];
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
}

/// Everything the target answers before 2.5 s on its own clock (the 2 s baseline and the method's first half
/// second) is a fast 200.
const HEALTHY_UNTIL: Duration = Duration::from_millis(2500);

const ERRORS_SLO: &str =
    "  - { name: availability, signal: errors, objective: 99%, source: { load: shoppers } }";

// === tests ===

/// Item 8: with the default 5 s request timeout and a 4 s method, 503s used to be counted only 5 s after they
/// were sent, so the method was never guarded. They count as soon as they are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_counts_a_503_when_it_is_answered_not_at_the_request_timeout() {
    let target =
        Target::start(|t| if t < HEALTHY_UNTIL { (200, Duration::ZERO) } else { (503, Duration::ZERO) })
            .await;
    let run = run(&target, "", ERRORS_SLO, "  - { wait: 4s }", "{ budget: 5% }").await;
    let (trip, reason) = run.trip();
    // 100 requests sent in the 2 s baseline, 4 s planned: 200 expected, an allowance of 10 bad answers.
    assert!(reason.contains("over the allowance of 10 (5% of 200 events)"), "{reason}");
    let bad: Vec<Hit> = target.hits().into_iter().filter(|h| h.status == 503).collect();
    let mut answers: Vec<Instant> = bad.iter().map(|h| h.answered).collect();
    answers.sort();
    let crossing = answers[10]; // the 11th bad answer is one over the allowance
    assert_in_time(trip, crossing, Duration::ZERO, "budget");
    assert!(number_after(&reason, "budget: ") >= 11, "{reason}");
}

/// Item 8: a request still waiting longer than the latency threshold is bad then, not when (or if) its slow
/// answer comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_past_the_latency_threshold_counts_as_bad_at_the_threshold() {
    let target =
        Target::start(
            |t| {
                if t < HEALTHY_UNTIL { (200, Duration::ZERO) } else { (200, Duration::from_secs(3)) }
            },
        )
        .await;
    let slos =
        "  - { name: fast, signal: latency, threshold: 300ms, objective: 99%, source: { load: shoppers } }";
    let run = run(&target, "", slos, "  - { wait: 4s }", "{ budget: 5% }").await;
    let (trip, reason) = run.trip();
    assert!(reason.contains("over the allowance of 10"), "{reason}");
    let slow: Vec<Hit> = target.hits().into_iter().filter(|h| h.answered > h.arrived).collect();
    let crossing = slow[10].arrived + Duration::from_millis(300);
    // The engine times a request from its due time, up to a few milliseconds before the target sees it.
    assert_in_time(trip, crossing, Duration::from_millis(50), "latency budget");
}

/// Item 9: the baseline rate counts the requests sent in the baseline, including those still waiting for
/// their answer when the method starts (a 400 ms target used to give 40/s for 50/s sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_traffic_floor_compares_with_every_request_sent_in_the_baseline() {
    // 400 ms answers; from 2.5 s on, every fifth request fails: 80% served.
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let target = Target::start(move |t| {
        let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let status = if t >= HEALTHY_UNTIL && n % 5 == 4 { 503 } else { 200 };
        (status, Duration::from_millis(400))
    })
    .await;
    let slo = "  - { name: availability, signal: errors, objective: 50%, source: { load: shoppers } }";
    let run = run(&target, "", slo, "  - { wait: 8s }", "{ min_traffic: 90% }").await;
    let (trip, reason) = run.trip();
    assert!(reason.starts_with("guardrail aborted the run: traffic floor: "), "{reason}");
    assert!(reason.contains("of the baseline 50.0/s"), "{reason}");
    // The crossing from the target's log: the first moment, once 5 s of the method have passed, when fewer
    // than 90% × 50/s × 5 s = 225 good answers came in the last 5 s.
    let method = run.when("phase: method");
    let good: Vec<Instant> = target.hits().iter().filter(|h| h.status == 200).map(|h| h.answered).collect();
    let served = |t: Instant| good.iter().filter(|&&a| a >= t - Duration::from_secs(5) && a < t).count();
    let mut crossing = method + Duration::from_secs(5);
    while served(crossing) >= 225 {
        crossing += Duration::from_millis(10);
        assert!(crossing < method + Duration::from_secs(8), "the target's log never fell below the floor");
    }
    assert_in_time(trip, crossing, Duration::from_millis(50), "traffic floor");
}

/// Item 10: `no_data` fires within a tick of its limit counted from the last answer, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_fires_a_tick_after_the_last_answer_plus_its_limit() {
    // From 2.5 s on the target holds every answer for 4 s (under the 5 s request timeout).
    let target =
        Target::start(
            |t| {
                if t < HEALTHY_UNTIL { (200, Duration::ZERO) } else { (200, Duration::from_secs(4)) }
            },
        )
        .await;
    let run = run(&target, "", ERRORS_SLO, "  - { wait: 6s }", "{ no_data: 2s }").await;
    let (trip, reason) = run.trip();
    assert!(reason.starts_with("guardrail aborted the run: no data: "), "{reason}");
    assert!(
        reason.contains(" since the last answer (") && reason.contains("waiting for their answers"),
        "{reason}"
    );
    let last_answer =
        target.hits().iter().filter(|h| h.answered == h.arrived).map(|h| h.answered).max().unwrap();
    assert_in_time(trip, last_answer + Duration::from_secs(2), Duration::ZERO, "no data");
}

// === SLO windows on a proxy source ===

/// Requests that reached the target this close to a window's edge could belong to either side: the proxy
/// sees a request a little before the target does.
const EDGE: Duration = Duration::from_millis(5);

/// A real `chaos proxy` admin API on port 0 with one `http` proxy (listening on port 0) in front of `upstream`;
/// returns the API's URL and the proxy's address.
async fn chaos_proxy(upstream: SocketAddr) -> (String, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let server = chaos_proxy::Server::new(chaos_proxy::ServerConfig::default());
    tokio::spawn(chaos_proxy::serve(listener, server, std::future::pending()));
    let client = chaos_proxy::client::Client::new(&api).unwrap();
    let proxy = chaos_proxy::client::NewProxy {
        name: "shop".into(),
        listen: Some("127.0.0.1:0".into()),
        upstream: upstream.to_string(),
        enabled: None,
        half_close: None,
    };
    let options = chaos_proxy::client::ProxyOptions { protocol: Some("http".into()), ..Default::default() };
    let created = client.create_proxy_with(&proxy, &options).await.unwrap();
    (api, created.listen)
}

/// Item 15: a target that fails every request until the method starts, behind a real `http` proxy. The proxy
/// source's windows count, request by request, what the target's log says happened in each: every baseline
/// error in the baseline, none in the method (events used to be stamped when the proxy's stats were polled,
/// up to 200 ms late, so the baseline's last errors landed in the method).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_source_counts_each_request_in_the_window_it_happened_in() {
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let fails = failing.clone();
    let target = Target::start(move |_| {
        let status = if fails.load(std::sync::atomic::Ordering::SeqCst) { 503 } else { 200 };
        (status, Duration::ZERO)
    })
    .await;
    let (api, listen) = chaos_proxy(target.addr).await;
    let yaml = format!(
        "apiVersion: chaos/v1\ntitle: windows on a proxy source\nhypothesis: each request counts in its own \
         window\ntargets:\n  shop: {{ proxy: {{ api: \"{api}\", name: shop }} }}\nload:\n  - {{ name: \
         shoppers, http: {{ url: \"http://{listen}/\" }}, rate: 100/s }}\nslos:\n  - {{ name: proxy \
         availability, signal: errors, objective: 50%, source: {{ proxy: shop }} }}\nbaseline: 2s\nmethod:\n  \
         - {{ wait: 2s }}\nrecovery: 1s\n"
    );
    // The target heals the moment the method starts.
    let heal = failing.clone();
    let run = run_yaml(&yaml, move |line| {
        if line.contains("phase: method") {
            heal.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    })
    .await;
    let outcome = &run.outcome;
    // The run's clock on ours: the method's phase line was reported the moment its `at` was taken.
    let phase = |name: &str| {
        let event = outcome.timeline.iter().find(|e| e.kind == "phase" && e.name == name).unwrap();
        (event.at, run.when(&format!("phase: {name}")))
    };
    let (method_at, method_seen) = phase("method");
    let origin = method_seen - method_at;
    let (method_start, method_end) = outcome.method_window.unwrap();
    let (baseline_at, _) = phase("baseline");
    let log = outcome.logs.get("proxy:shop").expect("the proxy source's log");
    let hits = target.hits();
    let mut method_counted = (0, 0);
    for (name, from, to) in [("baseline", baseline_at, method_start), ("method", method_start, method_end)] {
        let counted = log.between(from, to);
        let (counted_total, counted_bad) = (counted.len(), counted.iter().filter(|e| !e.ok).count());
        method_counted = (counted_total, counted_bad);
        // From the target's log: sure inside, and near an edge (either side).
        let inside = |h: &&Hit| h.arrived >= origin + from + EDGE && h.arrived + EDGE < origin + to;
        let near = |h: &&Hit| {
            let at = h.arrived.saturating_duration_since(origin);
            at.abs_diff(from) <= EDGE || at.abs_diff(to) <= EDGE
        };
        let sure: Vec<&Hit> = hits.iter().filter(inside).collect();
        let edge: Vec<&Hit> = hits.iter().filter(near).collect();
        let sure_bad = sure.iter().filter(|h| h.status == 503).count();
        let edge_bad = edge.iter().filter(|h| h.status == 503).count();
        eprintln!(
            "{name}: counted {counted_bad} bad of {counted_total}; target: {sure_bad} bad of {} inside, {} near \
             an edge",
            sure.len(),
            edge.len()
        );
        assert!(
            (sure.len()..=sure.len() + edge.len()).contains(&counted_total),
            "{name}: counted {counted_total} requests, the target saw {} (+{} at an edge)",
            sure.len(),
            edge.len()
        );
        assert!(
            (sure_bad..=sure_bad + edge_bad).contains(&counted_bad),
            "{name}: counted {counted_bad} errors, the target answered {sure_bad} (+{edge_bad} at an edge)"
        );
        assert!(edge.len() <= 2, "{name}: {} requests at an edge, too many to judge exactly", edge.len());
    }
    // The method's verdict judged exactly the method window's requests: its errors are those the target
    // answered in it (none, unless the heal, which follows the test seeing the method's phase line, came a
    // request late on a busy machine: then the per-window checks above placed it at the edge).
    let slo = &outcome.slos[0];
    let (total, bad) = method_counted;
    assert_eq!((slo.total as usize, (slo.total - slo.good) as usize), (total, bad), "{slo:?}");
    assert!(bad <= 2, "{bad} errors in the method: more than the edge allows ({slo:?})");
    assert!(slo.total >= 150, "{slo:?}");
}
