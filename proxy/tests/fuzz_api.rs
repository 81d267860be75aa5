//! Seeded fuzzing of the admin API in-process (`api::router` + `oneshot`, no socket for the API): thousands of
//! requests on every route with valid, mutated and random bodies, checking that the server never panics, answers
//! only documented statuses with Toxiproxy's error shapes, and that a refused request changes nothing. Each fuzz
//! loop collects every violation and fails once at the end with counts and examples; the tests after the loops
//! are minimal reproductions of what the loops found, one case per line.
//!
//! Safety: every proxy listens on a loopback address with port 0 and names an upstream nobody dials (no
//! client ever connects to a proxy here). Bodies that would make the server bind anything else (a fixed port,
//! all interfaces) or resolve a host name are never sent; see [`binds_only_loopback_port_zero`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Mutex, Once};

use axum::Router;
use axum::body::Body;
use chaos_proxy::model::{ProxyInput, ProxyUpdate};
use chaos_proxy::toxics::ToxicKind;
use chaos_proxy::{Server, ServerConfig};
use http::{Method, Request, header};
use http_body_util::BodyExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

const SEED: u64 = 0x0000_5eed_0fa9_1f22;
/// Requests of the main fuzz loop (each is followed by a `GET /proxies` snapshot).
const REQUESTS: usize = 3000;
/// Requests of the path fuzz loop, all with empty bodies (after 200 requests with bodies that build state).
const PATH_REQUESTS: usize = 1500;
/// Above this many proxies the generator favours deletes, so snapshots stay small and the run stays fast.
const MAX_PROXIES: usize = 24;
/// Toxics with a TTL shorter than this may expire between two snapshots, so snapshots leave them out.
const SHORT_TTL_MS: u64 = 86_400_000;
/// The TTL the generator gives valid toxics: long enough that none expires during the run.
const LONG_TTL_MS: u64 = 1_000_000_000;
/// An upstream that is never dialled: no client connects to any proxy in this file.
const UPSTREAM: &str = "127.0.0.1:9";

// === violations ===

/// Panics on tokio worker threads (handlers, TTL timers, accept loops), recorded by a hook because tokio turns
/// them into a `JoinError` or swallows them.
static WORKER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_worker_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            if thread.name().is_some_and(|n| n.starts_with("tokio-runtime-worker")) {
                WORKER_PANICS.lock().unwrap().push(info.to_string());
            }
            default(info);
        }));
    });
}

/// Every broken expectation of a run, grouped by kind and reported together at the end, so one known bug
/// does not hide the others.
#[derive(Default)]
struct Violations {
    by_kind: BTreeMap<&'static str, (usize, Vec<String>)>,
}

impl Violations {
    fn check(&mut self, ok: bool, kind: &'static str, detail: impl FnOnce() -> String) {
        if ok {
            return;
        }
        let (count, examples) = self.by_kind.entry(kind).or_default();
        *count += 1;
        if examples.len() < 3 {
            examples.push(detail());
        }
    }

    fn assert_none(&self, what: &str) {
        if self.by_kind.is_empty() {
            return;
        }
        let mut report = format!("{what}: the API broke its contract:\n");
        for (kind, (count, examples)) in &self.by_kind {
            report.push_str(&format!("- {kind}: {count} request(s), e.g.\n"));
            for example in examples {
                report.push_str(&format!("    {example}\n"));
            }
        }
        panic!("{report}");
    }
}

// === routes ===

/// What the router does with a request, predicted from its method and raw path as axum's matcher sees them.
#[derive(Clone, Debug, PartialEq)]
enum Target {
    /// A Toxiproxy route and method: a handler runs.
    Handler(Handler),
    /// A known path with a method it does not take: empty 405.
    MethodNotAllowed,
    /// No route: Go's text 404.
    NoRoute,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Handler {
    ListProxies,
    CreateProxy,
    Populate,
    Reset,
    Version,
    AllStats,
    Metrics,
    GetProxy,
    UpdateProxy,
    DeleteProxy,
    ListToxics,
    CreateToxic,
    GetToxic,
    UpdateToxic,
    DeleteToxic,
    ProxyStats,
}

impl Handler {
    /// Statuses the handler may answer with (403 from the browser guard aside).
    fn statuses(self) -> &'static [u16] {
        use Handler::*;
        match self {
            ListProxies | Version | AllStats | Metrics => &[200],
            CreateProxy => &[201, 400, 409, 500],
            Populate => &[201, 400, 500],
            Reset => &[204, 500],
            GetProxy | ListToxics | GetToxic | ProxyStats => &[200, 404],
            UpdateProxy => &[200, 400, 404, 500],
            DeleteProxy | DeleteToxic => &[204, 404],
            CreateToxic => &[200, 400, 404, 409],
            UpdateToxic => &[200, 400, 404],
        }
    }

    fn reads_only(self) -> bool {
        use Handler::*;
        matches!(
            self,
            ListProxies | Version | AllStats | Metrics | GetProxy | ListToxics | GetToxic | ProxyStats
        )
    }
}

/// Mirrors the router table in `api.rs`: static segments match byte for byte (no percent-decoding), a
/// parameter matches one segment (an empty one too, unless it ends the path), HEAD is served by GET routes,
/// `/metrics` takes any method.
fn target(method: &Method, path: &str) -> Target {
    use Handler::*;
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let last = segments.len() - 1;
    let param = |i: usize| !segments[i].is_empty() || i < last;
    let get = method == Method::GET || method == Method::HEAD;
    let table: &[(Method, Handler)] = match segments.as_slice() {
        ["proxies"] => &[(Method::GET, ListProxies), (Method::POST, CreateProxy)],
        ["populate"] => &[(Method::POST, Populate)],
        ["reset"] => &[(Method::POST, Reset)],
        ["version"] => &[(Method::GET, Version)],
        ["stats"] => &[(Method::GET, AllStats)],
        ["metrics"] => return Target::Handler(Metrics),
        ["proxies", _] if param(1) => &[
            (Method::GET, GetProxy),
            (Method::POST, UpdateProxy),
            (Method::PATCH, UpdateProxy),
            (Method::DELETE, DeleteProxy),
        ],
        ["proxies", _, "toxics"] if param(1) => &[(Method::GET, ListToxics), (Method::POST, CreateToxic)],
        ["proxies", _, "stats"] if param(1) => &[(Method::GET, ProxyStats)],
        ["proxies", _, "toxics", _] if param(1) && param(3) => &[
            (Method::GET, GetToxic),
            (Method::POST, UpdateToxic),
            (Method::PATCH, UpdateToxic),
            (Method::DELETE, DeleteToxic),
        ],
        _ => return Target::NoRoute,
    };
    table
        .iter()
        .find(|(m, _)| m == method || (get && *m == Method::GET))
        .map_or(Target::MethodNotAllowed, |(_, h)| Target::Handler(*h))
}

/// Percent-encodes everything but RFC 3986 unreserved characters, as a client building a path would.
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// === listen safety ===

/// Whether the server, given `listen`, can only fail or bind a random loopback port: never a fixed port,
/// never all interfaces, never a DNS lookup. std resolves `host:port` with getaddrinfo only when the text after
/// the last `:` is a port number, so text without one fails before any lookup.
fn listen_is_safe(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback() && addr.port() == 0;
    }
    match listen.rsplit_once(':') {
        None => !listen.is_empty(),
        Some((_, port)) => port.parse::<u16>().is_err(),
    }
}

/// Whether sending `body` to `handler` can only bind loopback port 0, decoded with the server's own types so
/// the check sees exactly what the handler will. An absent listen means all interfaces, so creates need one.
fn binds_only_loopback_port_zero(handler: Handler, body: &[u8]) -> bool {
    let create_safe = |p: &ProxyInput| p.listen.as_deref().is_some_and(listen_is_safe);
    match handler {
        Handler::CreateProxy => serde_json::from_slice::<ProxyInput>(body).map_or(true, |p| create_safe(&p)),
        Handler::Populate => {
            serde_json::from_slice::<Vec<ProxyInput>>(body).map_or(true, |list| list.iter().all(create_safe))
        }
        Handler::UpdateProxy => serde_json::from_slice::<ProxyUpdate>(body)
            .map_or(true, |u| u.listen.as_deref().is_none_or(listen_is_safe)),
        _ => true,
    }
}

// === generators ===

const NAMES: &[&str] = &[
    "redis",
    "pg",
    "p1",
    "p2",
    "p3",
    "ünïcødé",
    "名前",
    "🦀",
    "quote\"d",
    "back\\slash",
    "a/b",
    "with space",
    "tab\t",
    "nl\n",
    "nul\u{0}",
    "%2F",
    "..",
    ".",
    "-",
    "?q=1",
    "#frag",
    "\u{202e}rtl",
    "\u{feff}",
    "\u{2028}",
    "latency_downstream",
    "slicer_upstream",
];

fn random_name(rng: &mut StdRng) -> String {
    match rng.random_range(0..20) {
        0 => "n".repeat(rng.random_range(100..2000)),
        1 => format!("x{}", rng.random_range(0..1000)),
        _ => NAMES[rng.random_range(0..NAMES.len())].to_string(),
    }
}

fn random_listen(rng: &mut StdRng) -> &'static str {
    const UNBINDABLE: &[&str] =
        &["nonsense", "127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1", "[::1]:x", "::"];
    match rng.random_range(0..20) {
        0 => "[::1]:0",
        1 => UNBINDABLE[rng.random_range(0..UNBINDABLE.len())],
        _ => "127.0.0.1:0",
    }
}

fn proxy_input(rng: &mut StdRng) -> Value {
    let name = random_name(rng);
    let mut v = json!({"name": name, "listen": random_listen(rng), "upstream": UPSTREAM});
    if rng.random_bool(0.2) {
        v["enabled"] = json!(rng.random_bool(0.5));
    }
    if rng.random_bool(0.1) {
        v["half_close"] = json!(rng.random_bool(0.5));
    }
    // HTTP mode: most proxies speak http, so L7 toxics are accepted as often as refused.
    if rng.random_bool(0.5) {
        v["protocol"] = json!(random_protocol(rng));
    }
    if rng.random_bool(0.1) {
        v["latency_buckets_ms"] = random_bounds(rng);
    }
    v
}

fn random_protocol(rng: &mut StdRng) -> &'static str {
    ["http", "http", "HTTP", "tcp", "udp", ""][rng.random_range(0..6)]
}

/// Extra latency bounds, sometimes out of range (zero, negative).
fn random_bounds(rng: &mut StdRng) -> Value {
    let n = rng.random_range(0..4);
    json!((0..n).map(|_| f64::from(rng.random_range(-1..2000)) / 2.0).collect::<Vec<f64>>())
}

fn proxy_update(rng: &mut StdRng) -> Value {
    let mut v = json!({});
    if rng.random_bool(0.4) {
        v["listen"] = json!(random_listen(rng));
    }
    if rng.random_bool(0.3) {
        v["upstream"] = json!(if rng.random_bool(0.5) { UPSTREAM } else { "localhost:9" });
    }
    if rng.random_bool(0.5) {
        v["enabled"] = json!(rng.random_bool(0.5));
    }
    if rng.random_bool(0.2) {
        v["half_close"] = json!(rng.random_bool(0.5));
    }
    if rng.random_bool(0.15) {
        v["protocol"] = json!(random_protocol(rng));
    }
    if rng.random_bool(0.1) {
        v["latency_buckets_ms"] = random_bounds(rng);
    }
    v
}

fn attributes(rng: &mut StdRng, kind: &str) -> Value {
    match kind {
        "latency" => json!({"latency": rng.random_range(0..2000), "jitter": rng.random_range(0..100)}),
        "bandwidth" => json!({"rate": rng.random_range(0..10_000)}),
        "slow_close" => json!({"delay": rng.random_range(0..1000)}),
        "timeout" | "reset_peer" => json!({"timeout": rng.random_range(0..1000)}),
        "slicer" => {
            json!({"average_size": rng.random_range(1..100), "size_variation": rng.random_range(0..50)})
        }
        "limit_data" => json!({"bytes": rng.random_range(0..100_000)}),
        // Mostly valid, sometimes out of range (status 700, percentage 101, code 17, a bad regex).
        "http_abort" => {
            let status = [503, 500, 429, 700][rng.random_range(0..4)];
            let percentage = rng.random_range(0..=101);
            json!({"status": status, "path_prefix": "/checkout", "method": "POST", "percentage": percentage})
        }
        "http_delay" => {
            let regex = ["^/a", "(", ""][rng.random_range(0..3)];
            let (delay, max_active) = (rng.random_range(-1..2000), rng.random_range(0..5));
            let jitter = rng.random_range(0..100);
            json!({"delay": delay, "jitter": jitter, "path_regex": regex, "max_active": max_active})
        }
        "grpc_abort" => {
            let code = [json!(14), json!("UNAVAILABLE"), json!(17)][rng.random_range(0..3)].clone();
            json!({"code": code, "message": "injected", "headers": {"x-tenant": "a"}})
        }
        _ => json!({}),
    }
}

fn toxic_input(rng: &mut StdRng, name: Option<String>) -> Value {
    let kind = ToxicKind::TYPES[rng.random_range(0..ToxicKind::TYPES.len())];
    let mut v = json!({"type": kind});
    // Toxiproxy clients may leave attributes out (every attribute then defaults to zero).
    if rng.random_bool(0.9) {
        v["attributes"] = attributes(rng, kind);
    }
    if let Some(name) = name {
        v["name"] = json!(name);
    }
    let stream = ["upstream", "downstream", "UPSTREAM", "Downstream"][rng.random_range(0..4)];
    match rng.random_range(0..4) {
        0 => {}
        1 => v["direction"] = json!(stream),
        _ => v["stream"] = json!(stream),
    }
    if rng.random_bool(0.5) {
        v["toxicity"] = json!(f64::from(rng.random_range(0..=100u8)) / 100.0);
    }
    if rng.random_bool(0.2) {
        v["ttl"] = json!(LONG_TTL_MS);
    }
    v
}

fn toxic_update(rng: &mut StdRng, kind: &str) -> Value {
    let mut v = json!({});
    if rng.random_bool(0.7) {
        v["attributes"] = attributes(rng, kind);
    }
    if rng.random_bool(0.4) {
        v["toxicity"] = json!(f64::from(rng.random_range(0..=100u8)) / 100.0);
    }
    if rng.random_bool(0.1) {
        v["ttl"] = json!(LONG_TTL_MS);
    }
    v
}

// === mutators ===

/// A value of the wrong type or an extreme of the right one.
fn weird_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..22) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!("0"),
        3 => json!(""),
        4 => json!(-1),
        5 => json!(1.5),
        6 => json!(1e300),
        7 => json!(-1e300),
        8 => json!(u64::MAX),
        9 => json!(i64::MIN),
        10 => json!(i64::MAX / 2 + 1),
        11 => json!(0),
        12 => json!([]),
        13 => json!({}),
        14 => json!([[["deep"]]]),
        15 => json!("x".repeat(rng.random_range(1_000..65_536))),
        16 => json!("ünï\u{0}\"\\/\u{2028}🦀"),
        17 => json!(rng.random::<i64>()),
        18 => json!(rng.random::<f64>()),
        19 => json!(["slicer", "latency", "bogus", "upstream", "downstream"][rng.random_range(0..5)]),
        20 => (0..rng.random_range(1..200)).fold(json!(1), |v, _| json!([v])),
        _ => json!({"average_size": 0, "size_variation": 0}),
    }
}

/// Replaces, removes, adds or wraps one node somewhere in `v`.
fn mutate_value(rng: &mut StdRng, v: &mut Value) {
    let descend = rng.random_bool(0.6);
    match v {
        Value::Object(map) if descend && !map.is_empty() => {
            let i = rng.random_range(0..map.len());
            if let Some((_, child)) = map.iter_mut().nth(i) {
                return mutate_value(rng, child);
            }
        }
        Value::Array(items) if descend && !items.is_empty() => {
            let i = rng.random_range(0..items.len());
            return mutate_value(rng, &mut items[i]);
        }
        _ => {}
    }
    match (rng.random_range(0..6), &mut *v) {
        (0, Value::Object(map)) if !map.is_empty() => {
            let key = map.keys().nth(rng.random_range(0..map.len())).cloned().unwrap();
            map.remove(&key);
        }
        (1, Value::Object(map)) => {
            const KEYS: &[&str] =
                &["name", "type", "stream", "toxicity", "attributes", "ttl", "enabled", "x"];
            map.insert(KEYS[rng.random_range(0..KEYS.len())].into(), weird_value(rng));
        }
        (2, _) => *v = json!([v.take()]),
        _ => *v = weird_value(rng),
    }
}

/// Byte-level damage to a serialised body: flips, cuts, duplicated keys, stray tokens.
fn mutate_bytes(rng: &mut StdRng, body: &mut Vec<u8>) {
    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "\\",
        "null",
        "1e999",
        "-0",
        "18446744073709551616",
        "\"\\ud800\"",
        "\\u0000",
        "NaN",
        "\u{feff}",
        "\"name\":\"dup\",",
        "\"type\":\"slicer\",",
        "\"toxicity\":2,",
        "\u{fffd}",
    ];
    for _ in 0..rng.random_range(1..=3) {
        let len = body.len();
        let at = if len == 0 { 0 } else { rng.random_range(0..len) };
        match rng.random_range(0..6) {
            0 if len > 0 => body[at] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => body[at] = rng.random(),
            2 => body.truncate(at),
            3 if len > 0 => {
                let end = (at + rng.random_range(1..16)).min(len);
                body.drain(at..end);
            }
            4 => {
                // Duplicate a key right after the first brace.
                if let Some(brace) = body.iter().position(|b| *b == b'{') {
                    let key = ["\"name\":\"dup\",", "\"listen\":\"127.0.0.1:0\",", "\"attributes\":{},"];
                    body.splice(brace + 1..brace + 1, key[rng.random_range(0..key.len())].bytes());
                }
            }
            _ => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())].as_bytes();
                body.splice(at..at, token.iter().copied());
            }
        }
    }
}

/// The body for a request to `handler`: valid for the route, mutated, random bytes, or empty.
fn body_for(rng: &mut StdRng, handler: Option<Handler>, state: &State) -> Vec<u8> {
    let valid = match handler {
        Some(Handler::CreateProxy) => proxy_input(rng),
        Some(Handler::Populate) => {
            let n = rng.random_range(0..4);
            Value::Array((0..n).map(|_| proxy_input(rng)).collect())
        }
        Some(Handler::UpdateProxy) => proxy_update(rng),
        Some(Handler::CreateToxic) => {
            let name = rng.random_bool(0.8).then(|| random_name(rng));
            toxic_input(rng, name)
        }
        Some(Handler::UpdateToxic) => {
            let kind = state.any_toxic_type(rng);
            toxic_update(rng, &kind)
        }
        _ => json!({}),
    };
    match rng.random_range(0..20) {
        0..=7 => valid.to_string().into_bytes(),
        8..=13 => {
            let mut v = valid;
            for _ in 0..rng.random_range(1..=3) {
                mutate_value(rng, &mut v);
            }
            v.to_string().into_bytes()
        }
        14..=16 => {
            let mut bytes = valid.to_string().into_bytes();
            mutate_bytes(rng, &mut bytes);
            bytes
        }
        17 => (0..rng.random_range(0..256)).map(|_| rng.random()).collect(),
        18 => Vec::new(),
        _ => b" \n\t ".to_vec(),
    }
}
// === state ===

/// The registry as `GET /proxies` shows it, without toxics that may expire at any moment.
#[derive(Clone, Default)]
struct State {
    proxies: Map<String, Value>,
}

impl State {
    fn parse(body: &str) -> State {
        let Ok(Value::Object(mut proxies)) = serde_json::from_str::<Value>(body) else {
            panic!("GET /proxies is not a JSON object: {body:?}");
        };
        for proxy in proxies.values_mut() {
            if let Some(Value::Array(toxics)) = proxy.get_mut("toxics") {
                toxics.retain(|t| t.get("ttl").and_then(Value::as_u64).is_none_or(|ttl| ttl >= SHORT_TTL_MS));
            }
        }
        State { proxies }
    }

    fn toxics(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.proxies.iter().flat_map(|(proxy, view)| {
            view["toxics"].as_array().into_iter().flatten().map(move |toxic| (proxy, toxic))
        })
    }

    fn any_proxy(&self, rng: &mut StdRng) -> String {
        if self.proxies.is_empty() || rng.random_bool(0.25) {
            return random_name(rng);
        }
        self.proxies.keys().nth(rng.random_range(0..self.proxies.len())).cloned().unwrap()
    }

    /// A proxy and one of its toxics (or names that may not exist).
    fn any_toxic(&self, rng: &mut StdRng) -> (String, String) {
        let toxics: Vec<(&String, &Value)> = self.toxics().collect();
        if toxics.is_empty() || rng.random_bool(0.2) {
            return (self.any_proxy(rng), random_name(rng));
        }
        let (proxy, toxic) = toxics[rng.random_range(0..toxics.len())];
        (proxy.clone(), toxic["name"].as_str().unwrap_or_default().to_string())
    }

    fn any_toxic_type(&self, rng: &mut StdRng) -> String {
        let types: Vec<&str> = self.toxics().filter_map(|(_, t)| t["type"].as_str()).collect();
        if types.is_empty() {
            return "latency".into();
        }
        types[rng.random_range(0..types.len())].to_string()
    }

    /// Caps every toxic must respect, whatever request produced it; checked on toxics not in `before`.
    fn check_caps(&self, before: &State, v: &mut Violations, what: &str) {
        let old: Vec<(&String, &Value)> = before.toxics().collect();
        for (proxy, toxic) in self.toxics().filter(|t| !old.contains(t)) {
            let a = &toxic["attributes"];
            if toxic["type"] == "slicer" {
                let (avg, var) = (a["average_size"].as_i64(), a["size_variation"].as_i64());
                let ok = avg.is_some_and(|n| n >= 0)
                    && var.is_some_and(|n| n >= 0)
                    && (avg, var) != (Some(0), Some(0));
                v.check(ok, "a slicer the cap forbids (0/0 or negative) is in the registry", || {
                    format!("{what}\n      proxy {} now holds {toxic}", short(proxy))
                });
            }
            // Clients read toxicity as a float: the API must never show anything else.
            v.check(toxic["toxicity"].is_number(), "a toxic shows a non-numeric toxicity", || {
                format!("{what}\n      proxy {} now holds {toxic}", short(proxy))
            });
        }
    }
}

/// A name for a failure message, cut short (some generated names are kilobytes long).
fn short(name: &str) -> String {
    let cut: String = name.chars().take(40).collect();
    if cut.len() < name.len() { format!("{cut:?}… ({} bytes)", name.len()) } else { format!("{cut:?}") }
}

// === the fuzzer ===

struct Reply {
    status: u16,
    content_type: Option<String>,
    body: String,
}

struct Fuzz {
    router: Router,
    rng: StdRng,
    state: State,
    violations: Violations,
    /// How many requests got each status, printed at the end to show the mix stayed varied.
    statuses: BTreeMap<u16, usize>,
    sent: usize,
    skipped: usize,
}

impl Fuzz {
    fn new(seed: u64) -> Fuzz {
        record_worker_panics();
        let server = Server::new(ServerConfig { seed: Some(seed), metrics: true });
        Fuzz {
            router: chaos_proxy::api::router(server),
            rng: StdRng::seed_from_u64(seed),
            state: State::default(),
            violations: Violations::default(),
            statuses: BTreeMap::new(),
            sent: 0,
            skipped: 0,
        }
    }

    /// Sends one request on a worker task, so a handler panic comes back as an error instead of ending the run.
    async fn send(
        &self,
        method: &Method,
        path: &str,
        body: Vec<u8>,
        browser: bool,
    ) -> Option<Result<Reply, String>> {
        let mut request = Request::builder().method(method).uri(path);
        if browser {
            request = request.header(header::USER_AGENT, "Mozilla/5.0 (X11; Linux x86_64)");
        }
        let request = request.body(Body::from(body)).ok()?;
        let router = self.router.clone();
        let answer = tokio::spawn(async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, content_type, bytes)
        })
        .await;
        Some(match answer {
            Err(e) => Err(format!("the handler panicked: {e}")),
            Ok((status, content_type, bytes)) => match String::from_utf8(bytes.to_vec()) {
                Ok(body) => Ok(Reply { status, content_type, body }),
                Err(_) => Err(format!("{status} with a body that is not UTF-8: {bytes:?}")),
            },
        })
    }

    /// One request whose answer the caller checks: `(status, body)`.
    async fn call(&self, method: Method, path: &str, body: &str) -> (u16, String) {
        let reply = self.send(&method, path, body.as_bytes().to_vec(), false).await.unwrap().unwrap();
        (reply.status, reply.body)
    }

    async fn snapshot(&self) -> State {
        let reply = self.send(&Method::GET, "/proxies", Vec::new(), false).await.unwrap().unwrap();
        assert_eq!(reply.status, 200, "GET /proxies: {}", reply.body);
        State::parse(&reply.body)
    }

    /// A method and path: mostly real routes on known names, sometimes anything.
    fn random_request_line(&mut self) -> (Method, String) {
        let rng = &mut self.rng;
        let crowded = self.state.proxies.len() > MAX_PROXIES;
        let method = match rng.random_range(0..24) {
            0 => Method::PUT,
            1 => Method::HEAD,
            2 => Method::OPTIONS,
            3..=8 => Method::GET,
            9..=16 => Method::POST,
            17..=19 => Method::PATCH,
            _ => Method::DELETE,
        };
        let route = if crowded && rng.random_bool(0.5) { 1 } else { rng.random_range(0..16) };
        let path = match route {
            0 => "/proxies".to_string(),
            1 => format!("/proxies/{}", encode(&self.state.any_proxy(rng))),
            2 | 3 => format!("/proxies/{}/toxics", encode(&self.state.any_proxy(rng))),
            4..=6 => {
                let (proxy, toxic) = self.state.any_toxic(rng);
                format!("/proxies/{}/toxics/{}", encode(&proxy), encode(&toxic))
            }
            7 => format!("/proxies/{}/stats", encode(&self.state.any_proxy(rng))),
            8 => "/populate".into(),
            9 => "/reset".into(),
            10 => ["/version", "/metrics", "/stats"][rng.random_range(0..3)].into(),
            11 => random_path(rng),
            _ => return self.valid_request_line(),
        };
        (if crowded { Method::DELETE } else { method }, path)
    }

    /// A request that a real client would send at this point, so state keeps evolving.
    fn valid_request_line(&mut self) -> (Method, String) {
        let rng = &mut self.rng;
        match rng.random_range(0..6) {
            0 | 1 => (Method::POST, "/proxies".into()),
            2 | 3 => (Method::POST, format!("/proxies/{}/toxics", encode(&self.state.any_proxy(rng)))),
            4 => {
                let (proxy, toxic) = self.state.any_toxic(rng);
                (Method::PATCH, format!("/proxies/{}/toxics/{}", encode(&proxy), encode(&toxic)))
            }
            _ => (Method::POST, "/populate".into()),
        }
    }

    /// Sends one random request (with a body unless `bodies` is false) and checks everything about its answer.
    async fn step(&mut self, i: usize, bodies: bool) {
        let (method, path) = self.random_request_line();
        let target = target(&method, path.split(['?', '#']).next().unwrap_or_default());
        let handler = match &target {
            Target::Handler(h) => Some(*h),
            _ => None,
        };
        let body = if bodies { body_for(&mut self.rng, handler, &self.state) } else { Vec::new() };
        if handler.is_some_and(|h| !binds_only_loopback_port_zero(h, &body)) {
            self.skipped += 1;
            return;
        }
        let browser = self.rng.random_bool(0.02);
        let shown_body: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        let what =
            format!("request {i}: {method} {path} {shown_body:?}{}", if browser { " (browser)" } else { "" });
        let Some(answer) = self.send(&method, &path, body, browser).await else {
            self.skipped += 1;
            return;
        };
        self.sent += 1;
        let panics: Vec<String> = std::mem::take(&mut *WORKER_PANICS.lock().unwrap());
        self.violations.check(panics.is_empty(), "a server task panicked", || format!("{what}: {panics:?}"));
        let reply = match answer {
            Ok(reply) => reply,
            Err(e) => return self.violations.check(false, "no answer", || format!("{what}: {e}")),
        };
        *self.statuses.entry(reply.status).or_default() += 1;
        let before = std::mem::take(&mut self.state);
        let after = self.snapshot().await;
        let shown_reply: String = reply.body.chars().take(300).collect();
        let what = format!("{what}\n      -> {} {shown_reply:?}", reply.status);
        let v = &mut self.violations;
        check_reply(v, &what, &target, browser, &method, &reply);
        after.check_caps(&before, v, &what);
        if reply.status < 300 {
            check_effect(v, &what, handler, &path, &reply, &after);
        }
        if reply.status >= 400 || handler.is_none_or(Handler::reads_only) || method == Method::HEAD {
            check_state_unchanged(v, &what, &before, &after, handler, &reply);
        }
        self.state = after;
    }
}

/// Routes the generator picks now and then: near misses of real ones, odd encodings, junk.
fn random_path(rng: &mut StdRng) -> String {
    const PATHS: &[&str] = &[
        "/",
        "",
        "//",
        "/proxies/",
        "/proxies//toxics",
        "/proxies/p1/",
        "/proxies/p1/toxics/",
        "/PROXIES",
        "/%70roxies",
        "/proxies/%FF",
        "/proxies/p1/toxics/%C3%28",
        "/proxies/%2e%2e",
        "/proxies/a%00b",
        "/proxies/..",
        "/proxies/p1/toxics/t/extra",
        "/proxies?x=1",
        "/proxies/p1?x=%FF",
        "/reset/",
        "/versions",
        "/metrics/",
        "/stats/p1",
        "/populate?",
        "/proxies/p1/stats/x",
        "*",
        "/proxies/%",
        "/proxies/%zz",
    ];
    match rng.random_range(0..3) {
        0 => (0..rng.random_range(1..5))
            .map(|_| format!("/{}", encode(&random_name(rng)).chars().take(200).collect::<String>()))
            .collect(),
        _ => PATHS[rng.random_range(0..PATHS.len())].to_string(),
    }
}

/// Status and body shape of one answer.
fn check_reply(
    v: &mut Violations,
    what: &str,
    target: &Target,
    browser: bool,
    method: &Method,
    reply: &Reply,
) {
    let head = *method == Method::HEAD;
    let exact = |v: &mut Violations, kind, status: u16, body: &str| {
        let ok = reply.status == status && (head || reply.body == body);
        v.check(ok, kind, || format!("{what}\n      expected {status} {body:?}"));
    };
    let handler = match target {
        _ if browser => return exact(v, "browser not refused with 403", 403, "User agent not allowed\n"),
        Target::NoRoute => {
            return exact(v, "unknown path not answered with Go's text 404", 404, "404 page not found\n");
        }
        Target::MethodNotAllowed => return exact(v, "wrong method not answered with an empty 405", 405, ""),
        Target::Handler(h) => *h,
    };
    let documented = handler.statuses().contains(&reply.status);
    v.check(documented, "undocumented status", || {
        format!("{what}\n      {handler:?} answers {:?}", handler.statuses())
    });
    if head {
        // axum answers HEAD like GET, without the body.
        return v.check(reply.body.is_empty(), "HEAD answered with a body", || what.to_string());
    }
    if reply.status >= 400 {
        let body: Value = serde_json::from_str(&reply.body).unwrap_or_default();
        let message = body["error"].as_str().unwrap_or_default();
        let shaped = !message.is_empty() && body["status"] == json!(reply.status);
        v.check(shaped, "error body is not Toxiproxy's {\"error\": ..., \"status\": <code>}", || {
            what.to_string()
        });
        if reply.status == 500 {
            v.check(message.contains("listen tcp"), "a 500 that is not a listen failure", || {
                what.to_string()
            });
        }
        return;
    }
    match handler {
        _ if reply.status == 204 => v.check(reply.body.is_empty(), "204 with a body", || what.to_string()),
        Handler::Version => {
            v.check(reply.body == "{\"version\": \"2.12.0\"}\n", "unexpected /version body", || {
                what.to_string()
            })
        }
        Handler::Metrics => check_metrics(v, what, &reply.body),
        _ => {
            let json = reply.content_type.as_deref() == Some("application/json")
                && serde_json::from_str::<Value>(&reply.body).is_ok();
            v.check(json, "success body is not JSON", || what.to_string());
        }
    }
}

/// An accepted change is in the registry right after, exactly as the answer showed it.
fn check_effect(
    v: &mut Violations,
    what: &str,
    handler: Option<Handler>,
    path: &str,
    reply: &Reply,
    after: &State,
) {
    let shown: Value = serde_json::from_str(&reply.body).unwrap_or_default();
    let proxy_named = |name: &Value| name.as_str().and_then(|n| after.proxies.get(n));
    let ok = match handler {
        Some(Handler::CreateProxy | Handler::UpdateProxy) => proxy_named(&shown["name"]) == Some(&shown),
        Some(Handler::Populate) => {
            // A name listed twice is replaced by its later entry, as in Toxiproxy; the last one must be there.
            let list: Vec<&Value> = shown["proxies"].as_array().into_iter().flatten().collect();
            let last = |i: usize| list[i + 1..].iter().all(|p| p["name"] != list[i]["name"]);
            (0..list.len()).filter(|i| last(*i)).all(|i| proxy_named(&list[i]["name"]) == Some(list[i]))
        }
        Some(Handler::CreateToxic | Handler::UpdateToxic) => {
            let expiring = shown["ttl"].as_u64().is_some_and(|ttl| ttl < SHORT_TTL_MS);
            expiring || after.toxics().any(|(_, t)| *t == shown)
        }
        Some(Handler::DeleteProxy) => {
            let name = path.split('/').nth(2).unwrap_or_default();
            !after.proxies.keys().any(|k| encode(k) == name)
        }
        _ => true,
    };
    v.check(ok, "an accepted change is not in the registry as answered", || what.to_string());
}

/// Every sample line of the Prometheus text ends in a number (names in label values are escaped).
fn check_metrics(v: &mut Violations, what: &str, text: &str) {
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or_default();
        let ok = value.parse::<f64>().is_ok() && line.matches('{').count() <= 1;
        v.check(ok, "metrics line is not `name{labels} value`", || format!("{what}\n      line {line:?}"));
    }
}

/// A refused or read-only request leaves the registry exactly as it was. A populate that fails to bind answers
/// with the proxies it handled, and Toxiproxy keeps those; nothing else may change.
fn check_state_unchanged(
    v: &mut Violations,
    what: &str,
    before: &State,
    after: &State,
    handler: Option<Handler>,
    reply: &Reply,
) {
    let mut handled: Vec<String> = Vec::new();
    if handler == Some(Handler::Populate) && reply.status == 500 {
        let body: Value = serde_json::from_str(&reply.body).unwrap_or_default();
        let names = body["proxies"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str());
        handled = names.map(str::to_string).collect();
    }
    let changed: Vec<&String> = before
        .proxies
        .keys()
        .chain(after.proxies.keys().filter(|k| !before.proxies.contains_key(*k)))
        .filter(|k| !handled.contains(k) && before.proxies.get(*k) != after.proxies.get(*k))
        .collect();
    let kind = match reply.status {
        400..=499 => "a refused request (4xx) changed the registry",
        500..=599 => "a failed request (5xx) changed the registry beyond what it reported",
        _ => "a read-only request changed the registry",
    };
    v.check(changed.is_empty(), kind, || {
        let show = |s: &State, k: &String| s.proxies.get(k).map_or("(absent)".into(), Value::to_string);
        let diff: Vec<String> = changed
            .iter()
            .map(|k| {
                format!(
                    "proxy {}\n        before: {}\n        after:  {}",
                    short(k),
                    show(before, k),
                    show(after, k)
                )
            })
            .collect();
        format!("{what}\n      {}", diff.join("\n      "))
    });
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_keep_the_api_contract() {
    let mut fuzz = Fuzz::new(SEED);
    for i in 0..REQUESTS {
        fuzz.step(i, true).await;
    }
    eprintln!("fuzz_api: {} sent, {} skipped, statuses {:?}", fuzz.sent, fuzz.skipped, fuzz.statuses);
    fuzz.violations.assert_none(&format!("{REQUESTS} random requests (seed {SEED:#x})"));
    assert!(fuzz.sent > REQUESTS * 3 / 4, "too many requests skipped: {}", fuzz.skipped);
    for status in [200, 201, 204, 400, 404, 409] {
        assert!(fuzz.statuses.get(&status).is_some_and(|n| *n > 5), "too few {status}s: {:?}", fuzz.statuses);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_paths_get_documented_answers() {
    let seed = SEED ^ 0x9a7;
    let mut fuzz = Fuzz::new(seed);
    // Some state first, so paths hit real proxies and toxics.
    for i in 0..200 {
        fuzz.step(i, true).await;
    }
    for i in 200..200 + PATH_REQUESTS {
        fuzz.step(i, false).await;
    }
    fuzz.violations.assert_none(&format!("{PATH_REQUESTS} random paths (seed {seed:#x})"));
}

/// Asserts a list of `(case, what went wrong)` is empty, showing every case at once.
fn assert_all_pass(what: &str, failures: &[String]) {
    assert!(failures.is_empty(), "{what}:\n- {}", failures.join("\n- "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slicer_caps_hold_on_every_route() {
    let fuzz = Fuzz::new(SEED);
    let post = |path, body| fuzz.call(Method::POST, path, body);
    let created = post("/proxies", r#"{"name":"p","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"}"#).await;
    assert_eq!(created.0, 201, "{created:?}");
    let mut failures = Vec::new();
    let refused = [
        ("/proxies/p/toxics", r#"{"name":"s","type":"slicer"}"#),
        ("/proxies/p/toxics", r#"{"name":"s","type":"slicer","attributes":null}"#),
        ("/proxies/p/toxics", r#"{"name":"s","type":"slicer","attributes":{}}"#),
        (
            "/proxies/p/toxics",
            r#"{"name":"s","type":"slicer","attributes":{"average_size":0,"size_variation":0}}"#,
        ),
        (
            "/proxies/p/toxics",
            r#"{"name":"s","type":"slicer","attributes":{"average_size":-1,"size_variation":5}}"#,
        ),
        ("/proxies/p/toxics", r#"{"name":"s","type":"slicer","attributes":{"average_size":5,"delay":-1}}"#),
        ("/proxies/p/toxics", r#"{"name":"ok","type":"slicer","attributes":{"average_size":10}}"#),
        ("/proxies/p/toxics/ok", r#"{"attributes":{"average_size":0}}"#),
        ("/proxies/p/toxics/ok", r#"{"attributes":{"size_variation":-3}}"#),
    ];
    for (path, body) in refused {
        let before = fuzz.snapshot().await;
        let (status, answer) = post(path, body).await;
        if path.ends_with("/toxics") && body.contains("\"ok\"") {
            assert_eq!(status, 200, "a valid slicer is accepted: {answer}");
            continue;
        }
        let after = fuzz.snapshot().await;
        if status != 400 || !answer.contains("slicer") || after.proxies != before.proxies {
            failures.push(format!("POST {path} {body}\n  expected 400 naming the slicer cap, nothing changed\n  got {status} {answer}"));
        }
        if status < 300 {
            // Undo the accepted toxic so the next case starts from the same state.
            fuzz.call(Method::DELETE, "/proxies/p/toxics/s", "").await;
        }
    }
    assert_all_pass("slicer 0/0 or negative must always be refused", &failures);
}

/// Minimal reproductions of what the fuzz loops found, one line each, so a fix can be checked case by case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_change_nothing_and_say_why() {
    let fuzz = Fuzz::new(SEED);
    let create = r#"{"name":"keep","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"}"#;
    let toxic = r#"{"name":"t","type":"latency","attributes":{"latency":100}}"#;
    let cases: &[(Method, &str, &str)] = &[
        // Replacing a proxy by one whose listen cannot be bound must not lose the proxy (or its toxics).
        (
            Method::POST,
            "/populate",
            r#"[{"name":"keep","listen":"127.0.0.1:99999","upstream":"127.0.0.1:9"}]"#,
        ),
        (Method::POST, "/populate", r#"[{"name":"keep","listen":"nonsense","upstream":"127.0.0.1:9"}]"#),
        // A failed rebind puts the proxy back as it was: listening, enabled.
        (Method::PATCH, "/proxies/keep", r#"{"listen":"nonsense"}"#),
        (Method::POST, "/proxies/keep", r#"{"listen":"127.0.0.1:99999"}"#),
        // A toxicity out of float32 range is not a toxicity (Toxiproxy: 400, cannot unmarshal into float32).
        (Method::POST, "/proxies/keep/toxics", r#"{"name":"big","type":"noop","toxicity":1e300}"#),
        (Method::POST, "/proxies/keep/toxics/t", r#"{"toxicity":-1e39}"#),
        // A path that is not UTF-8 once decoded gets Toxiproxy's JSON error, not axum's text.
        (Method::GET, "/proxies/%FF", ""),
        (Method::DELETE, "/proxies/keep/toxics/%C3%28", ""),
        (Method::POST, "/proxies/%FF/toxics", toxic),
    ];
    let mut failures = Vec::new();
    for (method, path, body) in cases {
        // Each case starts from proxy `keep` with toxic `t`, whatever the case before did.
        fuzz.call(Method::DELETE, "/proxies/keep", "").await;
        assert_eq!(fuzz.call(Method::POST, "/proxies", create).await.0, 201);
        assert_eq!(fuzz.call(Method::POST, "/proxies/keep/toxics", toxic).await.0, 200);
        let before = fuzz.snapshot().await;
        let (status, answer) = fuzz.call(method.clone(), path, body).await;
        let after = fuzz.snapshot().await;
        let error: Value = serde_json::from_str(&answer).unwrap_or_default();
        let shaped =
            error["error"].as_str().is_some_and(|e| !e.is_empty()) && error["status"] == json!(status);
        if status < 400 || !shaped || after.proxies != before.proxies {
            let registry = if after.proxies == before.proxies {
                "unchanged".to_string()
            } else {
                let (b, a) = (Value::Object(before.proxies.clone()), Value::Object(after.proxies.clone()));
                format!("CHANGED\n    before: {b}\n    after:  {a}")
            };
            failures.push(format!(
                "{method} {path} {body}\n  expected a JSON error and no change\n  got {status} {answer:?}, registry {registry}"
            ));
        }
    }
    assert_all_pass("refused requests", &failures);
}

/// `/reset` (what CI suites call between tests) never leaves a toxic behind: even when a disabled proxy's
/// listen cannot be bound (500), every toxic is gone and every other proxy is enabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_is_all_or_nothing() {
    let fuzz = Fuzz::new(SEED);
    let setup = [
        ("/proxies", r#"{"name":"a","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"}"#),
        ("/proxies/a/toxics", r#"{"name":"t","type":"latency"}"#),
        ("/proxies", r#"{"name":"b","listen":"nonsense","upstream":"127.0.0.1:9","enabled":false}"#),
        ("/proxies", r#"{"name":"c","listen":"127.0.0.1:0","upstream":"127.0.0.1:9"}"#),
        ("/proxies/c/toxics", r#"{"name":"t","type":"latency"}"#),
    ];
    for (path, body) in setup {
        let (status, answer) = fuzz.call(Method::POST, path, body).await;
        assert!(
            status < 300 || (status == 400 && body.contains("nonsense")),
            "{path} {body} -> {status} {answer}"
        );
    }
    let (status, answer) = fuzz.call(Method::POST, "/reset", "").await;
    let after = fuzz.snapshot().await;
    assert!(status == 204 || status == 500, "/reset answered {status} {answer}");
    assert_eq!(after.toxics().count(), 0, "a reset left toxics: {}", Value::Object(after.proxies.clone()));
    for name in ["a", "c"] {
        assert_eq!(after.proxies[name]["enabled"], json!(true), "{name} not re-enabled: {answer}");
    }
    // Reset is repeatable: the same answer again, and still nothing left behind.
    let (again, _) = fuzz.call(Method::POST, "/reset", "").await;
    assert_eq!(again, status);
}
