//! The `http` and `process` providers of Chaos Toolkit activities (reference §7), run natively. Both
//! succeed whenever they get an answer: an http 5xx or a process' non-zero exit is an output, not a
//! failure; only connection errors, timeouts and processes that cannot start fail the activity.
//! (`python` providers go through [`super::python`].)

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Map, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::ActivityFailure;
use super::config::py_str;

/// The most of an http answer's body or a process' stdout/stderr kept (the rest is an error / dropped).
pub const MAX_OUTPUT_BYTES: usize = 16 << 20;

/// A failure as Chaos Toolkit journals it: `chaoslib.exceptions.ActivityFailed: <message>`.
pub fn activity_failed(message: impl std::fmt::Display) -> ActivityFailure {
    ActivityFailure::new(format!("chaoslib.exceptions.ActivityFailed: {message}\n"))
}

/// An http provider, its fields already substituted.
#[derive(Debug)]
pub struct HttpCall<'a> {
    pub url: &'a Value,
    pub method: Option<&'a str>,
    pub headers: Option<&'a Value>,
    pub arguments: Option<&'a Value>,
    pub timeout: Option<&'a Value>,
    pub verify_tls: bool,
    pub max_retries: u32,
}

/// Runs an http provider: `{status, headers, body}`; the body is JSON only for exactly
/// `application/json` answers.
pub async fn http(call: HttpCall<'_>) -> Result<Value, ActivityFailure> {
    let url = match call.url {
        Value::String(s) => s.clone(),
        other => return Err(activity_failed(format!("the http url must be a string, found {other}"))),
    };
    let method = call.method.unwrap_or("GET").to_ascii_uppercase();
    let (connect_timeout, read_timeout) = timeouts(call.timeout)?;
    let mut headers: Vec<(String, String)> = Vec::new();
    match call.headers {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => headers.extend(h.iter().map(|(k, v)| (k.clone(), py_str(v)))),
        Some(other) => return Err(activity_failed(format!("http headers must be a mapping, found {other}"))),
    }
    let mut target = url.clone();
    let mut body = Bytes::new();
    let arguments = call.arguments.filter(|a| !a.is_null());
    if method == "GET" {
        if let Some(args) = arguments {
            let query = urlencode(args);
            if !query.is_empty() {
                target.push(if target.contains('?') { '&' } else { '?' });
                target.push_str(&query);
            }
        }
    } else if let Some(args) = arguments {
        let json = headers.iter().any(|(k, v)| k == "Content-Type" && v == "application/json");
        if json {
            body = Bytes::from(serde_json::to_vec(args).map_err(activity_failed)?);
        } else {
            body = Bytes::from(urlencode(args));
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                headers.push(("Content-Type".into(), "application/x-www-form-urlencoded".into()));
            }
        }
    }
    let uri: http::Uri = target.parse().map_err(|e| activity_failed(format!("invalid url {url:?}: {e}")))?;
    let mut attempt = 0;
    loop {
        match send(&uri, &method, &headers, body.clone(), connect_timeout, read_timeout, call.verify_tls)
            .await
        {
            Ok(answer) => return Ok(answer),
            Err(Failure::Connect(e)) if attempt < call.max_retries => {
                tracing::debug!(url, attempt, "http provider: retrying after {e}");
                attempt += 1;
            }
            Err(Failure::Connect(e) | Failure::Other(e)) => {
                return Err(activity_failed(format!("failed to connect to {url}: {e}")));
            }
        }
    }
}

/// `timeout`: seconds, or `[connect, read]`; none means wait as long as it takes (as requests does).
fn timeouts(timeout: Option<&Value>) -> Result<(Option<Duration>, Option<Duration>), ActivityFailure> {
    let secs = |v: &Value| -> Result<Option<Duration>, ActivityFailure> {
        match v {
            Value::Null => Ok(None),
            Value::Number(n) => n
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| Some(Duration::from_secs_f64(f)))
                .ok_or_else(|| activity_failed(format!("invalid http timeout {n}"))),
            other => Err(activity_failed(format!("the http timeout must be a number, found {other}"))),
        }
    };
    match timeout {
        None => Ok((None, None)),
        Some(Value::Array(pair)) if pair.len() == 2 => Ok((secs(&pair[0])?, secs(&pair[1])?)),
        Some(one) => {
            let t = secs(one)?;
            Ok((t, t))
        }
    }
}

enum Failure {
    Connect(String),
    Other(String),
}

async fn send(
    uri: &http::Uri,
    method: &str,
    headers: &[(String, String)],
    body: Bytes,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    verify_tls: bool,
) -> Result<Value, Failure> {
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(Failure::Other(format!("unsupported url scheme in {uri} (http or https)"))),
    };
    let host = uri.host().ok_or_else(|| Failure::Other(format!("no host in {uri}")))?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare_host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let connect = async {
        let tcp = TcpStream::connect((bare_host.as_str(), port))
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        if https {
            let tls = tls_connector(verify_tls).map_err(Failure::Other)?;
            let name = rustls_pki_types::ServerName::try_from(bare_host.clone())
                .map_err(|e| Failure::Other(format!("invalid server name {bare_host:?}: {e}")))?;
            let stream = tls.connect(name, tcp).await.map_err(|e| Failure::Connect(format!("TLS: {e}")))?;
            Ok::<_, Failure>(Io::Tls(Box::new(stream)))
        } else {
            Ok(Io::Plain(tcp))
        }
    };
    let io = with_timeout(connect_timeout, connect, "connect").await??;
    let exchange = async {
        let (mut sender, conn) = match io {
            Io::Plain(s) => handshake(hyper_util::rt::TokioIo::new(s)).await?,
            Io::Tls(s) => handshake(hyper_util::rt::TokioIo::new(*s)).await?,
        };
        let mut request =
            http::Request::builder().method(method).uri(uri.path_and_query().map_or("/", |p| p.as_str()));
        let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or(host.clone());
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            request = request.header("Host", authority);
        }
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("user-agent")) {
            request = request.header("User-Agent", concat!("chaos/", env!("CARGO_PKG_VERSION")));
        }
        for (k, v) in headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let request =
            request.body(Full::new(body)).map_err(|e| Failure::Other(format!("invalid request: {e}")))?;
        let driver = tokio::spawn(conn);
        let response = sender.send_request(request).await.map_err(|e| Failure::Connect(e.to_string()));
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                driver.abort();
                return Err(e);
            }
        };
        let status = response.status().as_u16();
        let mut out_headers = Map::new();
        for (name, value) in response.headers() {
            let name = title_case(name.as_str());
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            match out_headers.get_mut(&name) {
                Some(Value::String(have)) => {
                    have.push_str(", ");
                    have.push_str(&value);
                }
                _ => {
                    out_headers.insert(name, Value::String(value));
                }
            }
        }
        let json = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == b"application/json");
        let bytes = Limited::new(response.into_body(), MAX_OUTPUT_BYTES)
            .collect()
            .await
            .map_err(|e| Failure::Connect(format!("reading the body: {e}")))?
            .to_bytes();
        driver.abort();
        let body = if json {
            serde_json::from_slice(&bytes)
                .map_err(|e| Failure::Other(format!("the JSON body does not parse: {e}")))?
        } else {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        };
        let mut out = Map::new();
        out.insert("status".into(), Value::from(status));
        out.insert("headers".into(), Value::Object(out_headers));
        out.insert("body".into(), body);
        Ok(Value::Object(out))
    };
    with_timeout(read_timeout, exchange, "read").await?
}

async fn with_timeout<T>(
    limit: Option<Duration>,
    work: impl std::future::Future<Output = T>,
    what: &str,
) -> Result<T, Failure> {
    match limit {
        None => Ok(work.await),
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .map_err(|_| Failure::Connect(format!("{what} timed out after {} s", limit.as_secs_f64()))),
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

type Connection = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), hyper::Error>> + Send>>;

async fn handshake<T>(io: T) -> Result<(Sender, Connection), Failure>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| Failure::Connect(e.to_string()))?;
    Ok((sender, Box::pin(conn)))
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// `Content-Type` rather than hyper's `content-type`, as Python's requests shows the usual servers' names.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn tls_connector(verify: bool) -> Result<tokio_rustls::TlsConnector, String> {
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = if verify {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// `verify_tls: false`: any certificate is accepted (signatures are still checked).
#[derive(Debug)]
struct NoVerify(Arc<tokio_rustls::rustls::crypto::CryptoProvider>);

impl tokio_rustls::rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<tokio_rustls::rustls::client::danger::ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<tokio_rustls::rustls::client::danger::HandshakeSignatureValid, tokio_rustls::rustls::Error>
    {
        tokio_rustls::rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<tokio_rustls::rustls::client::danger::HandshakeSignatureValid, tokio_rustls::rustls::Error>
    {
        tokio_rustls::rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `urllib.parse.urlencode(args, doseq)`-like: `k=v&k=v`, lists repeat the key, `None` values dropped.
fn urlencode(args: &Value) -> String {
    let mut pairs = Vec::new();
    let mut push = |k: &str, v: &Value| {
        if !v.is_null() {
            pairs.push(format!("{}={}", quote_plus(k), quote_plus(&py_str(v))));
        }
    };
    match args {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Array(items) => items.iter().for_each(|i| push(k, i)),
                    v => push(k, v),
                }
            }
        }
        Value::String(s) => return s.clone(),
        other => return py_str(other),
    }
    pairs.join("&")
}

fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A process provider, its arguments already substituted; `path` resolved by [`which`].
#[derive(Debug)]
pub struct ProcessCall<'a> {
    pub path: &'a str,
    pub arguments: Option<&'a Value>,
    pub timeout: Option<&'a Value>,
    /// Extra environment (`.env` var files).
    pub env: &'a [(String, String)],
}

/// Runs a process provider: `{status, stdout, stderr}`; a non-zero exit is an output (logged), a timeout
/// kills the process and fails the activity.
pub async fn process(call: ProcessCall<'_>) -> Result<Value, ActivityFailure> {
    let path = which(call.path)
        .ok_or_else(|| activity_failed(format!("path '{}' cannot be found, in activity", call.path)))?;
    let path = path.display().to_string();
    let mut command = match call.arguments {
        Some(Value::String(args)) => {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(format!("{path} {args}"));
            c
        }
        other => {
            let mut c = tokio::process::Command::new(&path);
            let items: Vec<Value> = match other {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items.clone(),
                Some(Value::Object(map)) => {
                    map.iter().flat_map(|(k, v)| [Value::String(k.clone()), v.clone()]).collect()
                }
                Some(other) => vec![other.clone()],
            };
            for item in items {
                if item.is_null() || item.as_str() == Some("") {
                    continue;
                }
                c.arg(py_str(&item));
            }
            c
        }
    };
    command
        .envs(call.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let timeout = match call.timeout {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(Duration::from_secs_f64)
        }
        Some(other) => {
            return Err(activity_failed(format!("the process timeout must be a number, found {other}")));
        }
    };
    let mut child = command.spawn().map_err(|e| activity_failed(format!("cannot run {path}: {e}")))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let work = async {
        let read = |pipe: Option<_>| async move {
            let mut buf = Vec::new();
            if let Some(pipe) = pipe {
                let pipe: tokio::process::ChildStdout = pipe;
                let _ = pipe.take(MAX_OUTPUT_BYTES as u64).read_to_end(&mut buf).await;
            }
            buf
        };
        let read_err = |pipe: Option<tokio::process::ChildStderr>| async move {
            let mut buf = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(MAX_OUTPUT_BYTES as u64).read_to_end(&mut buf).await;
            }
            buf
        };
        let (out, err, status) = tokio::join!(read(stdout.take()), read_err(stderr.take()), child.wait());
        (out, err, status)
    };
    let (out, err, status) = match timeout {
        None => work.await,
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(done) => done,
            // `child` is dropped with the future: kill_on_drop ends the process.
            Err(_) => return Err(activity_failed("process activity took too long")),
        },
    };
    let status = status.map_err(|e| activity_failed(format!("waiting for {path}: {e}")))?;
    let code = status.code().map_or_else(
        || {
            use std::os::unix::process::ExitStatusExt;
            Value::from(-status.signal().unwrap_or(0))
        },
        Value::from,
    );
    if status.code() != Some(0) {
        tracing::warn!("process {path} returned a non-zero exit code ({code}): this may indicate a failure");
    }
    let mut output = Map::new();
    output.insert("status".into(), code);
    output.insert("stdout".into(), Value::String(String::from_utf8_lossy(&out).into_owned()));
    output.insert("stderr".into(), Value::String(String::from_utf8_lossy(&err).into_owned()));
    Ok(Value::Object(output))
}

/// `shutil.which`: a path with a `/` as is when it is an executable file, else the first executable named
/// so on `PATH`. `~` is expanded first.
pub fn which(path: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let expanded = match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => std::path::PathBuf::from(path),
    };
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if expanded.to_string_lossy().contains('/') {
        return executable(&expanded).then_some(expanded);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join(&expanded)).find(|p| executable(p))
}
