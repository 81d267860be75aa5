//! A Prometheus HTTP API client for SLO figures: instant queries at a fixed time (one value, or a vector of
//! labelled values) and label values, read the way slo-math §7 says Prometheus answers: empty is no data,
//! `NaN`/±Inf are kept as values for the caller to judge, errors carry Prometheus's own message, and only
//! network errors and 503 are retried (once).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::http::{Client, Request};
use crate::probes::prometheus::{encode, instant_sample, query_url};

/// Deadline of one query.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read (a vector of a few thousand series fits).
const BODY_CAP: usize = 16 << 20;

/// Why a query has no usable answer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// No answer: connection refused, timeout, DNS.
    #[error("cannot reach prometheus at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// Prometheus refused the query or answered something unusable.
    #[error("prometheus refused {query:?}: {message}")]
    Refused { query: String, message: String },
}

/// One Prometheus server.
#[derive(Debug)]
pub struct Prometheus {
    base: String,
    client: Client,
    timeout: Duration,
    issued: AtomicU64,
}

impl Prometheus {
    /// `base` is the server's URL (`http://host:9090`, a path prefix allowed).
    pub fn new(base: &str) -> Prometheus {
        Prometheus {
            base: base.trim().trim_end_matches('/').to_string(),
            client: Client::new().with_body_cap(BODY_CAP),
            timeout: QUERY_TIMEOUT,
            issued: AtomicU64::new(0),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Prometheus {
        self.timeout = timeout;
        self
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// HTTP requests sent so far (retries included), for benchmarks and tests.
    pub fn queries_issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// The one value of an instant query evaluated at `at` (unix seconds; now when `None`): `None` for an
    /// empty result, NaN and ±Inf as they came. Several series are an error (aggregate the query).
    pub async fn value(&self, query: &str, at: Option<f64>) -> Result<Option<f64>, QueryError> {
        let (status, body) = self.get(&with_time(query_url(&self.base, query), at), query).await?;
        instant_sample(status, &body)
            .map(|sample| sample.map(|s| s.value))
            .map_err(|message| QueryError::Refused { query: query.to_string(), message })
    }

    /// Every series of an instant query evaluated at `at`, with its labels.
    pub async fn vector(
        &self,
        query: &str,
        at: Option<f64>,
    ) -> Result<Vec<(BTreeMap<String, String>, f64)>, QueryError> {
        let (status, body) = self.get(&with_time(query_url(&self.base, query), at), query).await?;
        let refused = |message: String| QueryError::Refused { query: query.to_string(), message };
        let json = success(status, &body).map_err(refused)?;
        let data = &json["data"];
        match data["resultType"].as_str() {
            Some("vector") => {}
            Some("scalar") => {
                let value = data["result"][1].as_str().and_then(|v| v.parse::<f64>().ok());
                return value
                    .map(|v| vec![(BTreeMap::new(), v)])
                    .ok_or_else(|| refused("unreadable scalar".into()));
            }
            other => return Err(refused(format!("expected an instant vector, got {other:?}"))),
        }
        let mut out = Vec::new();
        for series in data["result"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let labels = series["metric"]
                .as_object()
                .map(|m| {
                    m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect()
                })
                .unwrap_or_default();
            let value = series["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| refused(format!("unreadable sample {}", series["value"])))?;
            out.push((labels, value));
        }
        Ok(out)
    }

    /// The values of label `name` on the series `selector` matches (`/api/v1/label/NAME/values?match[]=…`).
    pub async fn label_values(&self, name: &str, selector: &str) -> Result<Vec<String>, QueryError> {
        let url = format!("{}/api/v1/label/{name}/values?match[]={}", self.base, encode(selector));
        let (status, body) = self.get(&url, selector).await?;
        let json = success(status, &body)
            .map_err(|message| QueryError::Refused { query: selector.to_string(), message })?;
        Ok(json["data"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default())
    }

    /// Whether the server answers `/-/ready`.
    pub async fn ready(&self) -> bool {
        matches!(self.get(&format!("{}/-/ready", self.base), "/-/ready").await, Ok((200, _)))
    }

    async fn get(&self, url: &str, what: &str) -> Result<(u16, bytes::Bytes), QueryError> {
        let request = Request::get(url)
            .map_err(|e| QueryError::Refused { query: what.to_string(), message: e.to_string() })?;
        let mut last = None;
        for _ in 0..2 {
            self.issued.fetch_add(1, Ordering::Relaxed);
            match self.client.send(&request, self.timeout).await {
                Ok(response) if response.status == 503 => {
                    last = Some(format!("http 503: {}", snippet(&response.body)))
                }
                Ok(response) if response.truncated => {
                    return Err(QueryError::Refused {
                        query: what.to_string(),
                        message: format!("answer larger than {} MiB", BODY_CAP >> 20),
                    });
                }
                Ok(response) => return Ok((response.status, response.body)),
                Err(error) => last = Some(error.to_string()),
            }
        }
        Err(QueryError::Unreachable { url: self.base.clone(), message: last.unwrap_or_default() })
    }
}

fn with_time(url: String, at: Option<f64>) -> String {
    match at {
        Some(t) => format!("{url}&time={t:.3}"),
        None => url,
    }
}

/// The JSON of a successful answer, or why it is not one.
fn success(status: u16, body: &[u8]) -> Result<Value, String> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    match json {
        Some(j) if j["status"] == "success" && (200..300).contains(&status) => Ok(j),
        Some(j) if j["status"] == "error" => Err(format!(
            "{}: {}",
            j["errorType"].as_str().unwrap_or("error"),
            j["error"].as_str().unwrap_or("(no message)")
        )),
        _ => Err(format!("http {status}: {}", snippet(body))),
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}
