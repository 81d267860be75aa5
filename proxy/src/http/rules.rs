//! The L7 rule set of one `http` proxy: its L7 toxics compiled for the data path. The registry rebuilds it on
//! every toxic change and publishes it through a watch channel, as it does the L4 chains; each request reads
//! the newest set once, so a change applies from the next request on and the API never waits on a request.
//!
//! Deciding a request's faults ([`decide`]) is a function of the request, the rules and the request's number
//! (its RNG is seeded from the proxy's seed and that number), so `--seed` replays which requests were faulted.
//! Rules are taken in the order the API lists the toxics: every selected `http_delay` adds its delay, and the
//! first selected abort (`http_abort`, `grpc_abort`) answers the request after the delays; aborts after it are
//! not rolled. A rule counts as active from its selection until its request's response is complete (a
//! delay while it sleeps and while the upstream answers), which is what `max_active` caps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, HeaderValue, StatusCode};
use rand::SeedableRng;
use rand::rngs::StdRng;
use regex::Regex;

use crate::hash::splitmix;
use crate::pipeline::ToxicSpec;
use crate::toxics::{GrpcAbort, HttpAbort, Latency, RequestMatch, Sample, ToxicKind};

/// The L7 toxics of a proxy, in the API's order.
pub(crate) type RuleSet = Arc<Vec<Rule>>;

/// One L7 toxic, compiled.
pub(crate) struct Rule {
    /// The toxic's id: a rebuilt set takes the `active` count of the rule with the same id.
    id: u64,
    pub name: Arc<str>,
    pub type_name: &'static str,
    method: String,
    path_prefix: String,
    path_regex: Option<Regex>,
    headers: Vec<(HeaderName, String)>,
    header_regex: Vec<(HeaderName, Regex)>,
    /// Chance that a matching request is faulted: `percentage` / 100 × `toxicity`.
    odds: f64,
    /// 0 = no cap.
    max_active: u64,
    /// Requests this toxic is faulting now; shared with later builds so an update keeps the count.
    active: Arc<AtomicU64>,
    pub action: Action,
}

/// What a selected rule does to its request.
#[derive(Clone)]
pub(crate) enum Action {
    Abort {
        status: StatusCode,
        body: Bytes,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// `message` is already percent-encoded for the `grpc-message` header; `None` when empty.
    GrpcAbort {
        code: u8,
        message: Option<HeaderValue>,
    },
    Delay(Latency),
}

/// Compiles the L7 toxics among `specs` (others are skipped), keeping the active counts of `previous`.
pub(crate) fn build<'a>(specs: impl IntoIterator<Item = &'a ToxicSpec>, previous: &[Rule]) -> RuleSet {
    let rules = specs
        .into_iter()
        .filter_map(|spec| {
            let (matching, action) = match &spec.kind {
                ToxicKind::HttpAbort(a) => (&a.matching, abort_action(a)),
                ToxicKind::HttpDelay(d) => (&d.matching, Action::Delay(d.as_latency())),
                ToxicKind::GrpcAbort(g) => (&g.matching, grpc_action(g)),
                _ => return None,
            };
            let active = previous
                .iter()
                .find(|r| r.id == spec.id)
                .map_or_else(|| Arc::new(AtomicU64::new(0)), |r| r.active.clone());
            Some(compile(spec, matching, action, active))
        })
        .collect();
    Arc::new(rules)
}

fn compile(spec: &ToxicSpec, m: &RequestMatch, action: Action, active: Arc<AtomicU64>) -> Rule {
    // Names were checked when the attributes were decoded; one that still fails to parse cannot match.
    let headers = m
        .headers
        .iter()
        .filter_map(|(name, value)| Some((HeaderName::from_bytes(name.as_bytes()).ok()?, value.clone())))
        .collect();
    let header_regex = m
        .header_regex
        .iter()
        .filter_map(|(name, pattern)| {
            Some((HeaderName::from_bytes(name.as_bytes()).ok()?, pattern.regex()?.clone()))
        })
        .collect();
    Rule {
        id: spec.id,
        name: spec.name.clone(),
        type_name: spec.kind.type_name(),
        method: m.method.clone(),
        path_prefix: m.path_prefix.clone(),
        path_regex: m.path_regex.regex().cloned(),
        headers,
        header_regex,
        odds: (m.share() / 100.0 * f64::from(spec.toxicity)).clamp(0.0, 1.0),
        max_active: m.max_active,
        active,
        action,
    }
}

fn abort_action(a: &HttpAbort) -> Action {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let headers = a
        .response_headers
        .iter()
        .filter_map(|(name, value)| {
            Some((HeaderName::from_bytes(name.as_bytes()).ok()?, HeaderValue::from_str(value).ok()?))
        })
        .collect();
    Action::Abort { status, body: Bytes::from(a.body.clone()), headers }
}

fn grpc_action(g: &GrpcAbort) -> Action {
    let message = if g.message.is_empty() {
        None
    } else {
        HeaderValue::from_str(&grpc_percent_encode(&g.message)).ok()
    };
    // A toxic without a code is refused by the registry; UNKNOWN only satisfies the type.
    Action::GrpcAbort { code: g.code.as_ref().map_or(2, |c| c.code.0), message }
}

/// Percent-encodes a `grpc-message` as the gRPC HTTP/2 spec asks: every byte outside 0x20..=0x7E, and `%`.
/// Also makes any text a valid header value.
pub(crate) fn grpc_percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

// === impl Rule ===

impl Rule {
    fn matches(&self, request: &Parts) -> bool {
        if !self.method.is_empty() && !request.method.as_str().eq_ignore_ascii_case(&self.method) {
            return false;
        }
        let path = request.uri.path();
        if !path.starts_with(&self.path_prefix) {
            return false;
        }
        if self.path_regex.as_ref().is_some_and(|r| !r.is_match(path)) {
            return false;
        }
        let equal = |(name, value): &(HeaderName, String)| {
            request.headers.get_all(name).iter().any(|v| v.as_bytes() == value.as_bytes())
        };
        let like = |(name, regex): &(HeaderName, Regex)| {
            request.headers.get_all(name).iter().any(|v| v.to_str().is_ok_and(|v| regex.is_match(v)))
        };
        self.headers.iter().all(equal) && self.header_regex.iter().all(like)
    }

    /// Takes one of the rule's `max_active` slots; `None` when all are taken.
    fn acquire(&self) -> Option<Slot> {
        let taken = self.active.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (self.max_active == 0 || n < self.max_active).then_some(n + 1)
        });
        taken.ok().map(|_| Slot(self.active.clone()))
    }
}

/// One request's hold on a rule's `max_active` count, released when dropped.
pub(crate) struct Slot(Arc<AtomicU64>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A fault chosen for one request.
pub(crate) struct Fault {
    pub name: Arc<str>,
    pub type_name: &'static str,
    /// Held, not read: releasing it when the request ends is its whole job.
    _slot: Slot,
}

/// What the rules decided for one request.
#[derive(Default)]
pub(crate) struct Decision {
    /// Total delay of the selected `http_delay` rules.
    pub delay: Duration,
    /// The selected abort, if any.
    pub abort: Option<Action>,
    /// Every selected rule, in order.
    pub faults: Vec<Fault>,
}

/// Decides the faults of request number `number` of a proxy seeded with `seed`.
/// A uniform draw in [0, 1) from 53 bits of a hash.
fn unit(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

pub(crate) fn decide(rules: &[Rule], request: &Parts, seed: u64, number: u64) -> Decision {
    let mut decision = Decision::default();
    let base = splitmix(seed ^ splitmix(!number));
    // A generator is seeded only when a delay is drawn: rolls are one hash each (a per-request ChaCha seed cost
    // a measurable share of the proxy's throughput).
    let mut rng: Option<StdRng> = None;
    for (index, rule) in rules.iter().enumerate() {
        let is_abort = !matches!(rule.action, Action::Delay(_));
        if (is_abort && decision.abort.is_some()) || !rule.matches(request) {
            continue;
        }
        // One independent draw per rule position, so one rule's change never shifts another's draws.
        let roll = unit(splitmix(base ^ splitmix(index as u64 + 1)));
        if roll >= rule.odds {
            continue;
        }
        let Some(slot) = rule.acquire() else { continue };
        match &rule.action {
            Action::Delay(latency) => {
                let rng = rng.get_or_insert_with(|| StdRng::seed_from_u64(base));
                decision.delay += latency.sample(rng)
            }
            action => decision.abort = Some(action.clone()),
        }
        decision.faults.push(Fault { name: rule.name.clone(), type_name: rule.type_name, _slot: slot });
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;
    use serde_json::{Value, json};

    fn spec(id: u64, kind: &str, attributes: Value) -> ToxicSpec {
        let kind = ToxicKind::default_for(kind).unwrap().merged(attributes.as_object()).unwrap();
        ToxicSpec { id, revision: 0, name: format!("t{id}").into(), kind, toxicity: 1.0 }
    }

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn every_given_condition_must_hold() {
        let rules = build(
            &[spec(
                1,
                "http_abort",
                json!({"status": 503, "method": "post", "path_prefix": "/checkout",
                       "path_regex": "^/checkout/[0-9]+$", "headers": {"x-tenant": "a"},
                       "header_regex": {"user-agent": "^curl/"}}),
            )],
            &[],
        );
        let hit = [("x-tenant", "a"), ("user-agent", "curl/8")];
        let cases = [
            (request("POST", "/checkout/12?x=1", &hit), true),
            (request("GET", "/checkout/12", &hit), false),
            (request("POST", "/checkout/ab", &hit), false),
            (request("POST", "/other/12", &hit), false),
            (request("POST", "/checkout/12", &[("x-tenant", "A"), ("user-agent", "curl/8")]), false),
            (request("POST", "/checkout/12", &[("x-tenant", "a"), ("user-agent", "wget")]), false),
            (
                request(
                    "POST",
                    "/checkout/12",
                    &[("x-tenant", "b"), ("x-tenant", "a"), ("user-agent", "curl/")],
                ),
                true,
            ),
        ];
        for (i, (parts, expected)) in cases.iter().enumerate() {
            let decision = decide(&rules, parts, 1, i as u64);
            assert_eq!(decision.abort.is_some(), *expected, "case {i}: {} {}", parts.method, parts.uri);
        }
    }

    #[test]
    fn delays_add_up_and_the_first_abort_wins() {
        let rules = build(
            &[
                spec(1, "http_delay", json!({"delay": 100})),
                spec(2, "http_abort", json!({"status": 503})),
                spec(3, "grpc_abort", json!({"code": 14})),
                spec(4, "http_delay", json!({"delay": 50})),
            ],
            &[],
        );
        let decision = decide(&rules, &request("GET", "/", &[]), 1, 0);
        assert_eq!(decision.delay, Duration::from_millis(150));
        assert!(matches!(decision.abort, Some(Action::Abort { status, .. }) if status == 503));
        let names: Vec<&str> = decision.faults.iter().map(|f| &*f.name).collect();
        assert_eq!(names, ["t1", "t2", "t4"]);
    }

    #[test]
    fn max_active_holds_until_the_slot_is_released_and_survives_rebuilds() {
        let specs = [spec(1, "http_abort", json!({"status": 503, "max_active": 1}))];
        let rules = build(&specs, &[]);
        let get = request("GET", "/", &[]);
        let first = decide(&rules, &get, 1, 0);
        assert_eq!(first.faults.len(), 1);
        let rebuilt = build(&specs, &rules);
        assert!(decide(&rebuilt, &get, 1, 1).abort.is_none(), "the cap holds across an update");
        drop(first);
        assert!(decide(&rebuilt, &get, 1, 2).abort.is_some(), "a released slot can be taken again");
    }

    #[test]
    fn percentage_and_toxicity_multiply_and_replay_with_the_seed() {
        let mut half = spec(1, "http_abort", json!({"status": 503, "percentage": 60}));
        half.toxicity = 0.5;
        let rules = build(&[half], &[]);
        let get = request("GET", "/", &[]);
        let run = |seed| (0..2000).map(|n| decide(&rules, &get, seed, n).abort.is_some()).collect::<Vec<_>>();
        let first = run(7);
        let hits = first.iter().filter(|h| **h).count();
        // 30% of 2000: mean 600, standard deviation 20.5; five of them either way.
        assert!((498..=702).contains(&hits), "{hits} of 2000 at 30%");
        assert_eq!(run(7), first, "the same seed gives the same sequence");
        assert_ne!(run(8), first, "another seed gives another");
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(grpc_percent_encode("no 100% é\n"), "no 100%25 %C3%A9%0A");
    }
}
