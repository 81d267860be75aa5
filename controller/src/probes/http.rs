//! The http probe: one request; the status (200..=399 unless set), optionally a text in the body and a
//! latency ceiling, must all hold.

use super::{Check, ms, snippet};
use crate::experiment::model::HttpProbe;
use crate::http::{self, Client, HttpError, Request};

/// Characters of the body quoted when `body_contains` does not match.
const QUOTED: usize = 200;

pub async fn check(spec: &HttpProbe) -> Check {
    let method = spec.method.as_deref().unwrap_or("GET");
    let request = Request::new(method, &spec.url).map_err(|e| e.to_string())?;
    let timeout = spec.timeout.map_or(http::DEFAULT_TIMEOUT, |t| t.0);
    let what = format!("{} {}", request.method(), request.url());
    let response = Client::new().send(&request, timeout).await.map_err(|e| match e {
        HttpError::Timeout { after, .. } => format!("{what}: no answer within {}", ms(after)),
        other => other.to_string(),
    })?;
    let (status, took) = (response.status, response.elapsed);
    let status_ok = match spec.status {
        Some(expected) => status == expected,
        None => (200..=399).contains(&status),
    };
    if !status_ok {
        let expected = spec.status.map_or_else(|| "200..=399".to_string(), |s| s.to_string());
        return Err(format!("{what}: expected status {expected}, got {status} after {}", ms(took)));
    }
    if let Some(needle) = &spec.body_contains {
        let body = String::from_utf8_lossy(&response.body);
        if !body.contains(needle.as_str()) {
            return Err(format!(
                "{what}: expected the body to contain {needle:?}, got {} bytes{}: {}",
                response.body.len(),
                if response.truncated { " (cut)" } else { "" },
                snippet(&body, QUOTED)
            ));
        }
    }
    if let Some(max) = spec.max_latency.map(|d| d.0)
        && took > max
    {
        return Err(format!("{what}: expected an answer within {}, took {}", ms(max), ms(took)));
    }
    let ceiling = spec.max_latency.map_or_else(String::new, |max| format!(" (max {})", ms(max.0)));
    Ok(format!("{what}: status {status} in {}{ceiling}", ms(took)))
}
