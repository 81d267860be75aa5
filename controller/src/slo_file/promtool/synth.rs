//! Synthetic input series for the generated promtool tests: label sets that the SLI's selectors match (and,
//! for a total on the same metric, one the bad or good selector does not), found from the matchers' values and
//! from strings generated out of their regexes (`regex-syntax`), each checked with the anchored regex
//! (`regex`) as Prometheus matches; and the counters' values in promtool's expanding notation.

use std::collections::BTreeMap;

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::slo_file::model::{Counted, Events, Query, Sli, SloDef};
use crate::slo_file::promql::le_text;
use crate::slo_file::rules;

/// Events per step in the synthetic series.
pub(super) const RATE: u64 = 100_000_000;
/// Where every synthetic counter starts, large enough that `rate()` never clamps its extrapolation at zero.
const OFFSET: u64 = 10_000_000_000_000;

/// Synthetic traffic: `bad` events of `RATE` per step from step `start` on (none before).
#[derive(Clone, Copy)]
pub(super) struct Traffic {
    pub(super) start: u64,
    pub(super) bad: u64,
}

impl Traffic {
    pub(super) fn ratio(&self) -> f64 {
        self.bad as f64 / RATE as f64
    }
}

/// What a synthetic series counts.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Counts {
    Bad,
    Good,
    All,
}

/// The input series of an SLI: label sets and what each counts.
pub(super) struct Synthetic {
    series: Vec<(String, Counts)>,
}

impl Synthetic {
    pub(super) fn of(slo: &SloDef) -> Result<Synthetic, String> {
        match &slo.sli {
            Sli::Events(Events { counted, query: Query::Counter(q), total: Query::Counter(t) }) => {
                let counted_kind = if *counted == Counted::Bad { Counts::Bad } else { Counts::Good };
                let other_kind = if *counted == Counted::Bad { Counts::Good } else { Counts::Bad };
                let a = Selector::parse(q)?;
                let t = Selector::parse(t)?;
                let key = if *counted == Counted::Bad { "bad" } else { "good" };
                if a.name == t.name {
                    let both = satisfy_all(&[&a.matchers[..], &t.matchers[..]].concat()).map_err(|why| {
                        format!("no series matches both the {key} and total selectors: {why}")
                    })?;
                    let rest = violate(&a, &t, &both).ok_or_else(|| {
                        format!("no series matches the total selector without matching the {key} one")
                    })?;
                    let s1 = a.series(&both);
                    let s2 = t.series(&rest);
                    let ok = a.matches(&a.name, &both)?
                        && t.matches(&t.name, &both)?
                        && t.matches(&t.name, &rest)?
                        && !a.matches(&a.name, &rest)?;
                    if !ok {
                        return Err("the synthesised label values do not satisfy the selectors".to_string());
                    }
                    Ok(Synthetic { series: vec![(s1, counted_kind), (s2, other_kind)] })
                } else {
                    let la = satisfy_all(&a.matchers).map_err(|why| format!("{key} selector: {why}"))?;
                    let lt = satisfy_all(&t.matchers).map_err(|why| format!("total selector: {why}"))?;
                    if !(a.matches(&a.name, &la)? && t.matches(&t.name, &lt)?) {
                        return Err("the synthesised label values do not satisfy the selectors".to_string());
                    }
                    Ok(Synthetic {
                        series: vec![(a.series(&la), counted_kind), (t.series(&lt), Counts::All)],
                    })
                }
            }
            Sli::Events(_) => {
                Err("its events are template queries ({{.window}}), which cannot be synthesised".to_string())
            }
            Sli::ErrorRatio(_) => {
                Err("its SLI is an error-ratio template query, which cannot be synthesised".to_string())
            }
            Sli::Latency(latency) => {
                let sel = Selector::parse(&format!("{}_count{{{}}}", latency.histogram, latency.matchers))?;
                let labels = satisfy_all(&sel.matchers).map_err(|why| format!("latency matchers: {why}"))?;
                if !sel.matches(&sel.name, &labels)? {
                    return Err("the synthesised label values do not satisfy the matchers".to_string());
                }
                let mut bucket = labels.clone();
                bucket.insert("le".to_string(), le_text(latency.threshold));
                Ok(Synthetic {
                    series: vec![
                        (series_text(&format!("{}_bucket", latency.histogram), &bucket), Counts::Good),
                        (series_text(&sel.name, &labels), Counts::All),
                    ],
                })
            }
        }
    }

    /// Each series with its values from step 0 to `until`.
    pub(super) fn series(&self, traffic: Traffic, until: u64) -> Vec<(String, String)> {
        self.series.iter().map(|(s, counts)| (s.clone(), values(*counts, traffic, until))).collect()
    }
}

/// promtool's expanding notation for a counter of `counts` over steps `0..=until`.
fn values(counts: Counts, traffic: Traffic, until: u64) -> String {
    let Traffic { start, bad } = traffic;
    let (before, after) = match counts {
        Counts::All => (RATE, RATE),
        Counts::Bad => (0, bad),
        Counts::Good => (RATE, RATE - bad),
    };
    if start == 0 || start >= until || before == after {
        let per = if start == 0 { after } else { before };
        return format!("{OFFSET}+{per}x{until}");
    }
    let first_after = OFFSET + before * start + after;
    format!("{OFFSET}+{before}x{start} {first_after}+{after}x{}", until - start - 1)
}

// === Selectors and label values ===

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Eq,
    Ne,
    Re,
    Nre,
}

#[derive(Clone, Debug)]
struct Matcher {
    label: String,
    op: Op,
    value: String,
}

impl Matcher {
    fn holds(&self, value: &str) -> Result<bool, String> {
        Ok(match self.op {
            Op::Eq => value == self.value,
            Op::Ne => value != self.value,
            Op::Re => anchored(&self.value)?.is_match(value),
            Op::Nre => !anchored(&self.value)?.is_match(value),
        })
    }
}

fn anchored(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("regex {pattern:?}: {e}"))
}

/// `metric{label="value",…}`.
struct Selector {
    name: String,
    matchers: Vec<Matcher>,
}

impl Selector {
    fn parse(text: &str) -> Result<Selector, String> {
        let t = text.trim();
        let end = t.find('{').unwrap_or(t.len());
        let name = t[..end].trim().to_string();
        if name.is_empty() {
            return Err(format!("selector {t:?} has no metric name"));
        }
        let mut matchers = Vec::new();
        let mut rest = t[end..].trim();
        if let Some(inner) = rest.strip_prefix('{') {
            rest = inner;
            loop {
                rest = rest.trim_start().trim_start_matches(',').trim_start();
                if let Some(after) = rest.strip_prefix('}') {
                    if !after.trim().is_empty() {
                        return Err(format!("unexpected text after the selector {t:?}"));
                    }
                    break;
                }
                let label_end =
                    rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                let label = rest[..label_end].to_string();
                if label.is_empty() {
                    return Err(format!("cannot read the matchers of {t:?}"));
                }
                rest = rest[label_end..].trim_start();
                let (op, len) = if rest.starts_with("=~") {
                    (Op::Re, 2)
                } else if rest.starts_with("!~") {
                    (Op::Nre, 2)
                } else if rest.starts_with("!=") {
                    (Op::Ne, 2)
                } else if rest.starts_with('=') {
                    (Op::Eq, 1)
                } else {
                    return Err(format!("cannot read the matcher of {label} in {t:?}"));
                };
                rest = rest[len..].trim_start();
                let (value, used) = string_literal(rest)
                    .ok_or_else(|| format!("cannot read the value of {label} in {t:?}"))?;
                rest = &rest[used..];
                if label == "__name__" {
                    return Err(format!("a __name__ matcher in {t:?} is not synthesised"));
                }
                matchers.push(Matcher { label, op, value });
            }
        } else if !rest.is_empty() {
            return Err(format!("{t:?} is not a plain selector"));
        }
        Ok(Selector { name, matchers })
    }

    fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool, String> {
        if name != self.name {
            return Ok(false);
        }
        for m in &self.matchers {
            if !m.holds(labels.get(&m.label).map(String::as_str).unwrap_or(""))? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn series(&self, labels: &BTreeMap<String, String>) -> String {
        series_text(&self.name, labels)
    }
}

/// A PromQL string literal at the start of `text` (`"…"` or `'…'` with Go escapes, or `` `…` ``): its value and
/// the bytes it took.
fn string_literal(text: &str) -> Option<(String, usize)> {
    let quote = text.chars().next()?;
    if !matches!(quote, '"' | '\'' | '`') {
        return None;
    }
    let mut out = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Some((out, i + c.len_utf8()));
        }
        if c == '\\' && quote != '`' {
            let (_, e) = chars.next()?;
            out.push(match e {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                other => other,
            });
        } else {
            out.push(c);
        }
    }
    None
}

fn series_text(name: &str, labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", rules::promql_string(v)))
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// A label set satisfying every matcher (an empty value meaning "label absent").
fn satisfy_all(matchers: &[Matcher]) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut names: Vec<&str> = matchers.iter().map(|m| m.label.as_str()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let on: Vec<&Matcher> = matchers.iter().filter(|m| m.label == name).collect();
        let value = candidates(&on)?
            .into_iter()
            .find(|v| on.iter().all(|m| m.holds(v).unwrap_or(false)))
            .ok_or_else(|| format!("no value of label {name} satisfies {}", describe(&on)))?;
        labels.insert(name.to_string(), value);
    }
    Ok(labels)
}

/// `base` changed on one label so that `total` still matches and `counted` does not.
fn violate(
    counted: &Selector,
    total: &Selector,
    base: &BTreeMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    for m in &counted.matchers {
        let on_counted: Vec<&Matcher> = counted.matchers.iter().filter(|x| x.label == m.label).collect();
        let on_total: Vec<&Matcher> = total.matchers.iter().filter(|x| x.label == m.label).collect();
        let all: Vec<&Matcher> = on_counted.iter().chain(on_total.iter()).copied().collect();
        let found = candidates(&all).ok()?.into_iter().find(|v| {
            on_total.iter().all(|x| x.holds(v).unwrap_or(false))
                && on_counted.iter().any(|x| !x.holds(v).unwrap_or(true))
        });
        if let Some(value) = found {
            let mut labels = base.clone();
            labels.insert(m.label.clone(), value);
            return Some(labels);
        }
    }
    None
}

/// Values worth trying for a label: those the matchers name or their regexes generate, then a few plain ones,
/// then the empty value (no label).
fn candidates(matchers: &[&Matcher]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for m in matchers {
        match m.op {
            Op::Eq | Op::Ne => {
                out.push(m.value.clone());
                out.push(format!("{}x", m.value));
            }
            Op::Re | Op::Nre => {
                let hir = regex_syntax::Parser::new()
                    .parse(&m.value)
                    .map_err(|e| format!("regex {:?}: {e}", m.value))?;
                let samples = generate(&hir, 16);
                out.extend(samples.iter().map(|s| format!("{s}x")));
                out.extend(samples);
            }
        }
    }
    out.extend(["x", "0", "a", "synthetic", "200", "500", "other", "X_1"].map(String::from));
    out.push(String::new());
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|v| seen.insert(v.clone()));
    Ok(out)
}

fn describe(matchers: &[&Matcher]) -> String {
    matchers
        .iter()
        .map(|m| {
            let op = match m.op {
                Op::Eq => "=",
                Op::Ne => "!=",
                Op::Re => "=~",
                Op::Nre => "!~",
            };
            format!("{}{op}{}", m.label, rules::promql_string(&m.value))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Up to `limit` strings the regex matches (anchors ignored; every result is checked against the anchored
/// regex by the caller).
fn generate(hir: &Hir, limit: usize) -> Vec<String> {
    let out: Vec<String> = match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => vec![String::new()],
        HirKind::Literal(lit) => vec![String::from_utf8_lossy(&lit.0).into_owned()],
        HirKind::Class(Class::Unicode(class)) => {
            let mut chars: Vec<char> = "x0a1_Z"
                .chars()
                .filter(|c| class.ranges().iter().any(|r| r.start() <= *c && *c <= r.end()))
                .collect();
            chars.extend(class.ranges().iter().map(|r| r.start()).filter(|c| !c.is_control()));
            chars.into_iter().take(3).map(String::from).collect()
        }
        HirKind::Class(Class::Bytes(class)) => {
            let mut bytes: Vec<u8> = b"x0a1_Z"
                .iter()
                .copied()
                .filter(|c| class.ranges().iter().any(|r| r.start() <= *c && *c <= r.end()))
                .collect();
            bytes.extend(class.ranges().iter().map(|r| r.start()).filter(|b| b.is_ascii_graphic()));
            bytes.into_iter().take(3).map(|b| char::from(b).to_string()).collect()
        }
        HirKind::Repetition(rep) => {
            let inner = generate(&rep.sub, limit);
            let mut counts = vec![rep.min.max(1)];
            if rep.min == 0 {
                counts.push(0);
            }
            counts.retain(|&c| rep.max.is_none_or(|max| c <= max));
            let mut out = Vec::new();
            for count in counts {
                for s in &inner {
                    out.push(s.repeat(usize::try_from(count).unwrap_or(1)));
                }
            }
            out
        }
        HirKind::Capture(capture) => generate(&capture.sub, limit),
        HirKind::Concat(parts) => {
            let mut acc = vec![String::new()];
            for part in parts {
                let options = generate(part, limit);
                let mut next = Vec::new();
                for prefix in &acc {
                    for option in &options {
                        if next.len() < limit {
                            next.push(format!("{prefix}{option}"));
                        }
                    }
                }
                acc = next;
            }
            acc
        }
        HirKind::Alternation(alternatives) => alternatives.iter().flat_map(|a| generate(a, limit)).collect(),
    };
    out.into_iter().take(limit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(matchers: &str) -> Result<BTreeMap<String, String>, String> {
        satisfy_all(&Selector::parse(&format!("m{{{matchers}}}"))?.matchers)
    }

    #[test]
    fn label_values_satisfy_regex_and_negative_matchers() {
        assert_eq!(labels(r#"code=~"5..""#).unwrap()["code"], "5xx");
        let got = labels(r#"code=~"5..|429",code!~"5.*""#).unwrap();
        assert_eq!(got["code"], "429");
        let got = labels(r#"route!="/health",job="a\"b""#).unwrap();
        assert_eq!((got["route"].as_str(), got["job"].as_str()), ("/healthx", "a\"b"));
        assert!(labels(r#"code=~"5..",code!~".*""#).unwrap_err().contains("no value of label code"));
    }

    #[test]
    fn the_rest_of_the_traffic_matches_total_but_not_bad() {
        let bad = Selector::parse(r#"http_requests_total{job="checkout",code=~"5.."}"#).unwrap();
        let total = Selector::parse(r#"http_requests_total{job="checkout"}"#).unwrap();
        let both = satisfy_all(&[&bad.matchers[..], &total.matchers[..]].concat()).unwrap();
        let rest = violate(&bad, &total, &both).unwrap();
        assert!(total.matches(&total.name, &rest).unwrap() && !bad.matches(&bad.name, &rest).unwrap());
        assert_eq!(rest["job"], "checkout");
    }

    #[test]
    fn values_start_errors_after_the_prefix() {
        let traffic = Traffic { start: 3, bad: 5 };
        assert_eq!(values(Counts::Bad, traffic, 6), format!("{OFFSET}+0x3 {}+5x2", OFFSET + 5));
        assert_eq!(values(Counts::All, traffic, 6), format!("{OFFSET}+{RATE}x6"));
        assert_eq!(values(Counts::Good, Traffic { start: 0, bad: 5 }, 6), format!("{OFFSET}+{}x6", RATE - 5));
    }
}
