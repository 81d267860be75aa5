//! The undo step of a proxy a `chaos run` created on a proxy server that cannot expire it by itself (a real
//! Toxiproxy has no leases): `DELETE /proxies/NAME` through the admin API, over a blocking HTTP/1.1
//! connection with connect and read timeouts, so a journal replay needs no async runtime and never hangs.
//!
//! 204 (deleted) and 404 (already gone) are success, which keeps the step idempotent; anything else is an error
//! naming the status. Only `http://host:port` APIs are spoken.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::AgentError;

/// How long to wait for the connection, and then for each read or write.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The most of an answer read (the status line and a short error body are all that matter).
const MAX_ANSWER: u64 = 16 * 1024;

/// Deletes proxy `name` through the admin API at `api` (`http://host:port`, an optional trailing `/`).
pub fn delete_proxy(api: &str, name: &str) -> Result<(), AgentError> {
    let authority = authority(api)?;
    let path = format!("/proxies/{}", escape_segment(name));
    let what = format!("DELETE {api}{path}");
    let failed = |detail: String| AgentError::Command { command: what.clone(), detail };
    let addrs: Vec<_> =
        authority.to_socket_addrs().map_err(|e| failed(format!("resolving {authority}: {e}")))?.collect();
    let mut last = None;
    let mut conn = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(stream) => {
                conn = Some(stream);
                break;
            }
            Err(e) => last = Some(format!("connecting to {addr}: {e}")),
        }
    }
    let mut conn =
        conn.ok_or_else(|| failed(last.unwrap_or_else(|| format!("{authority} resolves to no address"))))?;
    let io = |e: std::io::Error| failed(e.to_string());
    conn.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    conn.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let request = format!(
        "DELETE {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: chaos-agent/{}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    conn.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    // A server that closes at once after its answer may reset a lingering read: what was read counts.
    let read = conn.take(MAX_ANSWER).read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok());
    match (status, read) {
        (Some(204 | 404), _) => {
            tracing::info!(api, proxy = name, "proxy deleted (undo)");
            Ok(())
        }
        (Some(status), _) => {
            let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body).trim();
            let body: String = body.chars().take(200).collect();
            Err(failed(format!("status {status}: {body}")))
        }
        (None, Err(e)) => Err(failed(format!("reading the answer: {e}"))),
        (None, Ok(_)) => {
            Err(failed(format!("not an HTTP answer: {:?}", text.chars().take(60).collect::<String>())))
        }
    }
}

/// `host:port` of an `http://host:port` URL; anything else is refused with what was expected.
fn authority(api: &str) -> Result<String, AgentError> {
    let refuse = || AgentError::invalid("proxy API", format!("expected http://host:port, found {api:?}"));
    let rest = api.strip_prefix("http://").ok_or_else(refuse)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = authority.rsplit_once(':').ok_or_else(refuse)?;
    if host.is_empty() || authority.contains('/') || port.parse::<u16>().is_err() {
        return Err(refuse());
    }
    Ok(authority.to_string())
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a name is one path segment.
fn escape_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_host_port_apis_are_spoken() {
        assert_eq!(authority("http://127.0.0.1:8474").unwrap(), "127.0.0.1:8474");
        assert_eq!(authority("http://localhost:8474/").unwrap(), "localhost:8474");
        for wrong in
            ["https://h:1", "127.0.0.1:8474", "http://h", "http://h:x", "http://h:1/api", "http://:1"]
        {
            let e = authority(wrong).unwrap_err().to_string();
            assert!(e.contains("expected http://host:port"), "{wrong}: {e}");
        }
    }

    #[test]
    fn names_become_one_segment() {
        assert_eq!(escape_segment("db-1.main_x~"), "db-1.main_x~");
        assert_eq!(escape_segment("a/b c"), "a%2Fb%20c");
    }
}
