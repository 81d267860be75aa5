//! One HTTP POST per delivery attempt, over `http://` or `https://` (rustls with the system's roots): hyper's
//! HTTP/1.1 client connection on a socket of its own, one deadline over connect, TLS, send and the whole
//! answer, and at most [`BODY_CAP`] bytes of the answer kept (the rest is not read: the connection is
//! dropped). [`crate::http`]'s pooled client speaks plain `http://` only (it measures targets); receivers of
//! notifications are Slack, PagerDuty and the like, behind TLS.
//!
//! Errors never contain the URL: a Slack or webhook URL can be a secret.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use ::http::{HeaderValue, Method, Request, Uri};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;

use crate::http::describe;

/// How much of a receiver's answer is kept (for the delivery log); the rest is never read.
pub const BODY_CAP: usize = 4096;

const AGENT: &str = concat!("chaos/", env!("CARGO_PKG_VERSION"));

/// Where a channel POSTs: a checked absolute `http://` or `https://` URL.
#[derive(Clone, Debug)]
pub struct Target {
    uri: Uri,
    tls: bool,
    host: String,
    port: u16,
}

/// What the receiver answered: any status (whether it counts as delivered is the caller's call).
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    /// The first [`BODY_CAP`] bytes of the body, as text (lossy).
    pub body: String,
}

impl Target {
    /// Checks `url`; the reason never repeats the URL.
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url.trim().parse().map_err(|e: ::http::uri::InvalidUri| e.to_string())?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => return Err(format!("scheme {other:?}: use http:// or https://")),
            None => return Err("expected an absolute http:// or https:// url".into()),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or("the url has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Target { uri, tls, host, port })
    }

    /// POSTs `body` with `headers` and reads the answer within `timeout`.
    pub async fn post(
        &self,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Answer, String> {
        match tokio::time::timeout(timeout, self.exchange(headers, body)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    async fn exchange(&self, headers: &[(String, String)], body: Bytes) -> Result<Answer, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", self.host, self.port))?;
        let _ = tcp.set_nodelay(true);
        let request = self.request(headers, body)?;
        if self.tls {
            let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                .map_err(|e| format!("TLS server name {:?}: {e}", self.host))?;
            let stream = connector()?.connect(name, tcp).await.map_err(|e| format!("TLS handshake: {e}"))?;
            send(TokioIo::new(stream), request).await
        } else {
            send(TokioIo::new(tcp), request).await
        }
    }

    fn request(&self, headers: &[(String, String)], body: Bytes) -> Result<Request<Full<Bytes>>, String> {
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = path.parse().map_err(|e: ::http::uri::InvalidUri| e.to_string())?;
        let authority = self.uri.authority().map_or(self.host.as_str(), |a| a.as_str());
        let h = request.headers_mut();
        h.insert(HOST, HeaderValue::from_str(authority).map_err(|e| e.to_string())?);
        h.insert(USER_AGENT, HeaderValue::from_static(AGENT));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in headers {
            let name =
                ::http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header {name}: {e}"))?;
            let value = HeaderValue::from_str(value).map_err(|e| format!("header {name}: {e}"))?;
            h.insert(name, value);
        }
        Ok(request)
    }
}

async fn send<S>(io: TokioIo<S>, request: Request<Full<Bytes>>) -> Result<Answer, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("HTTP: {e}"))?;
    // The connection's task ends with the exchange (or when the sender is dropped on a timeout).
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let response = sender.send_request(request).await.map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut kept = BytesMut::new();
        while kept.len() < BODY_CAP {
            match body.frame().await {
                Some(frame) => {
                    if let Ok(data) = frame.map_err(|e| describe(&e))?.into_data() {
                        let room = BODY_CAP - kept.len();
                        kept.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                None => break,
            }
        }
        Ok(Answer { status, body: String::from_utf8_lossy(&kept).into_owned() })
    }
    .await;
    driver.abort();
    result
}

/// The TLS client: the system's root certificates, loaded once.
fn connector() -> Result<TlsConnector, String> {
    static CONNECTOR: OnceLock<Result<TlsConnector, String>> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(format!("no system root certificates could be loaded ({:?})", found.errors));
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(TlsConnector::from(Arc::new(config)))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_repeating_them() {
        let t = Target::parse("https://hooks.slack.com/services/T0/B0/secret").unwrap();
        assert!(t.tls && t.port == 443 && t.host == "hooks.slack.com");
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert!(!t.tls && t.port == 8080);
        for (url, reason) in [("ftp://h/secret", "scheme"), ("/secret", "absolute"), ("http://", "")] {
            let err = Target::parse(url).unwrap_err();
            assert!(err.contains(reason) && !err.contains("secret"), "{url}: {err}");
        }
    }
}
