//! Dialling a controller (plain HTTP/2 or TLS, mutual TLS, a bearer token on every call) and the server's
//! half: TLS from PEM files and reading the token a request carries. Checking *which* tokens are valid is the
//! controller's business, not this module's.

use std::fmt;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig, Uri};
use tonic::{Request, Status};

/// How long a client waits for the TCP connection to a controller.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long either side waits for a TLS handshake, so a silent peer cannot hold a connection open.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a client pings an idle connection, and how long it waits for the answer: a controller that
/// vanished without closing the connection is noticed within twice this.
pub const KEEPALIVE: Duration = Duration::from_secs(10);

/// How a client (the CLI, an agent) reaches a controller.
#[derive(Clone, Debug, Default)]
pub struct ClientConfig {
    /// `http://HOST:PORT` (plain, loopback/dev) or `https://HOST:PORT` (TLS).
    pub url: String,
    /// PEM CA bundle to verify the controller with (else the system roots, for https).
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for mutual TLS; goes with `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Name to verify in the controller's certificate when it differs from the URL's host.
    pub domain: Option<String>,
}

/// Server-side TLS from PEM files, with client certificates required when `client_ca` is given (mutual TLS).
#[derive(Clone, Debug, Default)]
pub struct ServerTls {
    /// The server's certificate chain (leaf first).
    pub cert: PathBuf,
    /// The private key of `cert`.
    pub key: PathBuf,
    /// CA bundle that client certificates must chain to; every client must present one when set.
    pub client_ca: Option<PathBuf>,
}

/// A tonic interceptor adding `authorization: Bearer <token>` to every call; a no-op without a token.
///
/// Its `Debug` output never shows the token.
#[derive(Clone)]
pub struct WithToken(Option<MetadataValue<Ascii>>);

/// Why a client endpoint or a server TLS configuration could not be built, or a connection not made.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The controller URL does not parse or is not `http(s)://HOST:PORT`.
    #[error("invalid controller URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What was expected and what was found.
        reason: String,
    },
    /// A TLS option was given with an `http://` URL, where it would be silently ignored.
    #[error("https needed for {option} (found {url})")]
    HttpsNeeded {
        /// The option (`--ca`, `--cert`, `--key`, `--domain`).
        option: &'static str,
        /// The URL as given.
        url: String,
    },
    /// Only one of a client certificate and its key was given.
    #[error("--cert and --key go together (found only {given})")]
    CertWithoutKey {
        /// The one that was given.
        given: &'static str,
    },
    /// A PEM file could not be read.
    #[error("reading {what} file {}: {source}", path.display())]
    Read {
        /// Which file (`CA`, `client certificate`, `server key`, ...).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but does not hold what it should.
    #[error("{what} file {}: {problem}", path.display())]
    Pem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What was expected and what was found.
        problem: String,
    },
    /// tonic refused the TLS configuration (for example a key that does not parse).
    #[error("configuring TLS for {url}: {detail}")]
    Tls {
        /// The controller URL.
        url: String,
        /// The error and its causes.
        detail: String,
    },
    /// The connection to the controller failed.
    #[error("connecting to {url}: {detail}")]
    Connect {
        /// The controller URL.
        url: String,
        /// The error and its causes (`tcp connect error: Connection refused`, a certificate problem).
        detail: String,
    },
    /// A token that cannot be sent as a bearer token. The token itself is never part of the message.
    #[error("invalid bearer token: {reason}")]
    Token {
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// An endpoint for `config` (TLS configured when https) with sane timeouts: connect 5 s, TLS handshake 5 s,
/// HTTP/2 keepalive pings every 10 s even while idle, `TCP_NODELAY`. Reads and checks the PEM files now so
/// that a missing or wrong file is reported before any connection is attempted.
pub fn endpoint(config: &ClientConfig) -> Result<Endpoint, TransportError> {
    let url = config.url.as_str();
    let https = check_url(url)?;
    if !https {
        let options = [
            ("--ca", config.ca.is_some()),
            ("--cert", config.cert.is_some()),
            ("--key", config.key.is_some()),
            ("--domain", config.domain.is_some()),
        ];
        if let Some((option, _)) = options.into_iter().find(|(_, given)| *given) {
            return Err(TransportError::HttpsNeeded { option, url: url.to_string() });
        }
    }
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| TransportError::InvalidUrl { url: url.to_string(), reason: chain(&e) })?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    if !https {
        return Ok(endpoint);
    }
    endpoint
        .tls_config(client_tls(config)?)
        .map_err(|e| TransportError::Tls { url: url.to_string(), detail: chain(&e) })
}

/// Connects to the controller (one attempt, within [`CONNECT_TIMEOUT`] and [`TLS_HANDSHAKE_TIMEOUT`]).
pub async fn channel(config: &ClientConfig) -> Result<Channel, TransportError> {
    endpoint(config)?
        .connect()
        .await
        .map_err(|e| TransportError::Connect { url: config.url.clone(), detail: chain(&e) })
}

/// The `authorization` metadata value for `token` (`Bearer <token>`); errors on a token that is empty or
/// holds anything but visible ASCII. The value is marked sensitive so that it stays out of HTTP/2 header
/// compression tables and debug output.
pub fn bearer(token: &str) -> Result<MetadataValue<Ascii>, TransportError> {
    if token.is_empty() {
        return Err(TransportError::Token { reason: "expected a non-empty token, found an empty one" });
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TransportError::Token {
            reason: "expected visible ASCII characters only, found a space, control or non-ASCII character",
        });
    }
    let mut value = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| TransportError::Token { reason: "not a valid metadata value" })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The token a request carries (`authorization: Bearer X`), if any; servers compare it with
/// [`tokens_equal`].
pub fn request_token<T>(req: &Request<T>) -> Option<&str> {
    metadata_token(req.metadata())
}

/// The token in `authorization: Bearer X` metadata, if there is one (the scheme is matched
/// case-insensitively, as HTTP does).
pub fn metadata_token(meta: &MetadataMap) -> Option<&str> {
    let value = meta.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares two tokens in time that depends only on their lengths, not on where they first differ, so that a
/// client cannot guess a token byte by byte from response times.
pub fn tokens_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        // `black_box` keeps the compiler from turning the loop into an early exit.
        diff = black_box(diff | usize::from(x ^ y));
    }
    diff == 0
}

// === impl WithToken ===

impl WithToken {
    /// An interceptor sending `token` on every call, or nothing with `None`.
    pub fn new(token: Option<&str>) -> Result<Self, TransportError> {
        token.map(bearer).transpose().map(Self)
    }
}

impl tonic::service::Interceptor for WithToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}

impl fmt::Debug for WithToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = if self.0.is_some() { "<redacted>" } else { "<none>" };
        f.debug_tuple("WithToken").field(&format_args!("{token}")).finish()
    }
}

// === impl ServerTls ===

impl ServerTls {
    /// tonic's TLS configuration for a server, reading and checking the PEM files now. A key that does not
    /// belong to the certificate is reported by `Server::builder().tls_config(..)`.
    pub fn config(&self) -> Result<ServerTlsConfig, TransportError> {
        let cert = read_certs("server certificate", &self.cert)?;
        let key = read_key("server key", &self.key)?;
        let config =
            ServerTlsConfig::new().identity(Identity::from_pem(cert, key)).timeout(TLS_HANDSHAKE_TIMEOUT);
        Ok(match &self.client_ca {
            Some(path) => config.client_ca_root(Certificate::from_pem(read_certs("client CA", path)?)),
            None => config,
        })
    }
}

// === helpers ===

/// Checks that `url` is `http(s)://HOST[:PORT]` with nothing after the authority; returns whether it is https.
fn check_url(url: &str) -> Result<bool, TransportError> {
    let invalid = |reason: String| TransportError::InvalidUrl { url: url.to_string(), reason };
    let uri: Uri = url.parse().map_err(|e| invalid(format!("{e}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        Some(other) => return Err(invalid(format!("expected an http or https URL, found scheme {other:?}"))),
        None => {
            return Err(invalid("expected http://HOST:PORT or https://HOST:PORT, found no scheme".into()));
        }
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("expected a host, found none".into()));
    }
    if let Some(path) = uri.path_and_query().map(|p| p.as_str()).filter(|p| !p.is_empty() && *p != "/") {
        return Err(invalid(format!("expected nothing after HOST:PORT, found {path:?}")));
    }
    Ok(https)
}

/// The client's TLS settings: `--ca` alone when given (a private CA is not mixed with the system's roots),
/// else the system roots; the client certificate for mutual TLS; the name to verify.
fn client_tls(config: &ClientConfig) -> Result<ClientTlsConfig, TransportError> {
    let mut tls = ClientTlsConfig::new().timeout(TLS_HANDSHAKE_TIMEOUT);
    tls = match &config.ca {
        Some(path) => tls.ca_certificate(Certificate::from_pem(read_certs("CA", path)?)),
        None => tls.with_native_roots(),
    };
    match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            let cert = read_certs("client certificate", cert)?;
            tls = tls.identity(Identity::from_pem(cert, read_key("client key", key)?));
        }
        (Some(_), None) => return Err(TransportError::CertWithoutKey { given: "--cert" }),
        (None, Some(_)) => return Err(TransportError::CertWithoutKey { given: "--key" }),
        (None, None) => {}
    }
    if let Some(domain) = &config.domain {
        tls = tls.domain_name(domain.clone());
    }
    Ok(tls)
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TransportError> {
    std::fs::read(path).map_err(|source| TransportError::Read { what, path: path.to_path_buf(), source })
}

/// Reads a PEM file holding one or more certificates (a bundle).
fn read_certs(what: &'static str, path: &Path) -> Result<Vec<u8>, TransportError> {
    let pem = read(what, path)?;
    let problem = |problem: String| TransportError::Pem { what, path: path.to_path_buf(), problem };
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| problem(format!("invalid PEM: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(problem("expected a PEM certificate (BEGIN CERTIFICATE), found none".into()));
    }
    Ok(pem)
}

/// Reads a PEM file holding a private key (PKCS#8, PKCS#1 or SEC1).
fn read_key(what: &'static str, path: &Path) -> Result<Vec<u8>, TransportError> {
    let pem = read(what, path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(_) => Ok(pem),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(TransportError::Pem {
            what,
            path: path.to_path_buf(),
            problem: "expected a PEM private key (BEGIN PRIVATE KEY), found none".into(),
        }),
        Err(e) => {
            Err(TransportError::Pem { what, path: path.to_path_buf(), problem: format!("invalid PEM: {e}") })
        }
    }
}

/// An error and its causes on one line: tonic's own message (`transport error`) says little without them.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Some layers wrap an error and repeat its message as their own; say it once.
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    //! Real sockets on 127.0.0.1, real TLS handshakes, a tiny real `AgentService`.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::net::SocketAddr;
    use std::os::unix::fs::PermissionsExt;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::net::TcpListener;
    use tokio_stream::Stream;
    use tonic::Code;
    use tonic::transport::Server;
    use tonic::transport::server::TcpIncoming;

    use super::*;
    use crate::certs::{self, CertError, DevCerts};
    use crate::v1::agent_service_client::AgentServiceClient;
    use crate::v1::agent_service_server::{AgentService, AgentServiceServer};
    use crate::v1::{AgentMessage, ControllerMessage, Hello, Welcome, agent_message, controller_message};

    const TOKEN: &str = "agent-token-1";
    /// Every network step of a test finishes well within this, or the test fails instead of hanging.
    const DEADLINE: Duration = Duration::from_secs(10);

    /// Answers `Connect` with a `welcome` when the agent's token is right, and counts the welcomes.
    struct Controller {
        welcomes: Arc<AtomicUsize>,
    }

    type ControllerStream = Pin<Box<dyn Stream<Item = Result<ControllerMessage, Status>> + Send>>;

    #[tonic::async_trait]
    impl AgentService for Controller {
        type ConnectStream = ControllerStream;

        async fn connect(
            &self,
            request: Request<tonic::Streaming<AgentMessage>>,
        ) -> Result<tonic::Response<ControllerStream>, Status> {
            if !metadata_token(request.metadata()).is_some_and(|token| tokens_equal(token, TOKEN)) {
                return Err(Status::unauthenticated("missing or wrong agent token"));
            }
            let first = request.into_inner().message().await?;
            if !matches!(first, Some(AgentMessage { body: Some(agent_message::Body::Hello(_)) })) {
                return Err(Status::invalid_argument("expected hello first"));
            }
            self.welcomes.fetch_add(1, Ordering::SeqCst);
            let welcome = ControllerMessage {
                request_id: 0,
                body: Some(controller_message::Body::Welcome(Welcome {
                    heartbeat_ms: 1000,
                    ..Welcome::default()
                })),
            };
            Ok(tonic::Response::new(Box::pin(tokio_stream::iter([Ok(welcome)]))))
        }
    }

    /// Serves `AgentService` on a fresh 127.0.0.1 port; returns the address and the count of welcomes sent.
    async fn serve(tls: Option<&ServerTls>) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let welcomes = Arc::new(AtomicUsize::new(0));
        let mut server = Server::builder();
        if let Some(tls) = tls {
            server = server.tls_config(tls.config().unwrap()).unwrap();
        }
        let router = server.add_service(AgentServiceServer::new(Controller { welcomes: welcomes.clone() }));
        tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
        (addr, welcomes)
    }

    /// Dials, sends `hello` and returns the controller's first message; a transport failure or a missed
    /// deadline comes back as a `Status` too, so tests can assert on one type.
    async fn hello(config: &ClientConfig, token: Option<&str>) -> Result<ControllerMessage, Status> {
        let call = async {
            let channel = channel(config).await.map_err(|e| Status::unavailable(e.to_string()))?;
            let mut client = AgentServiceClient::with_interceptor(channel, WithToken::new(token).unwrap());
            let hello = AgentMessage {
                body: Some(agent_message::Body::Hello(Hello { agent_id: "a1".into(), ..Hello::default() })),
            };
            let mut stream = client.connect(tokio_stream::iter([hello])).await?.into_inner();
            stream.message().await?.ok_or_else(|| Status::aborted("stream ended without a message"))
        };
        tokio::time::timeout(DEADLINE, call)
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("no answer before the test deadline")))
    }

    fn is_welcome(message: &ControllerMessage) -> bool {
        matches!(message.body, Some(controller_message::Body::Welcome(Welcome { heartbeat_ms: 1000, .. })))
    }

    /// A directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::SeqCst);
            let dir = std::env::temp_dir().join(format!("chaos-transport-{}-{name}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dev_certs(tmp: &TempDir, name: &str) -> DevCerts {
        let hosts = ["localhost", "127.0.0.1", "::1"].map(String::from);
        certs::generate(&tmp.0.join(name), &hosts, 1, false).unwrap()
    }

    fn server_tls(certs: &DevCerts, mutual: bool) -> ServerTls {
        ServerTls {
            cert: certs.controller_cert.clone(),
            key: certs.controller_key.clone(),
            client_ca: mutual.then(|| certs.ca.clone()),
        }
    }

    fn https(addr: SocketAddr, ca: &Path) -> ClientConfig {
        ClientConfig { url: format!("https://{addr}"), ca: Some(ca.to_path_buf()), ..ClientConfig::default() }
    }

    #[tokio::test]
    async fn plain_http_carries_calls() {
        let (addr, welcomes) = serve(None).await;
        let config = ClientConfig { url: format!("http://{addr}"), ..ClientConfig::default() };
        let answer = hello(&config, Some(TOKEN)).await.unwrap();
        assert!(is_welcome(&answer), "{answer:?}");
        assert_eq!(welcomes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn https_with_the_dev_ca_verifies_the_controller() {
        let tmp = TempDir::new("https");
        let certs = dev_certs(&tmp, "dev");
        let (addr, welcomes) = serve(Some(&server_tls(&certs, false))).await;

        let answer = hello(&https(addr, &certs.ca), Some(TOKEN)).await.unwrap();
        assert!(is_welcome(&answer), "{answer:?}");

        // The name to verify can differ from the URL's host: the certificate also names `localhost`.
        let config = ClientConfig { domain: Some("localhost".into()), ..https(addr, &certs.ca) };
        assert!(is_welcome(&hello(&config, Some(TOKEN)).await.unwrap()));
        assert_eq!(welcomes.load(Ordering::SeqCst), 2);

        // A name the certificate does not carry is refused.
        let config = ClientConfig { domain: Some("controller.example".into()), ..https(addr, &certs.ca) };
        let refused = hello(&config, Some(TOKEN)).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
        assert!(refused.message().contains("connecting to https://"), "{refused:?}");
        assert_eq!(welcomes.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_client_trusting_another_ca_refuses_the_controller() {
        let tmp = TempDir::new("other-ca");
        let certs = dev_certs(&tmp, "dev");
        let other = dev_certs(&tmp, "other");
        let (addr, welcomes) = serve(Some(&server_tls(&certs, false))).await;

        let refused = hello(&https(addr, &other.ca), Some(TOKEN)).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
        assert!(refused.message().contains("invalid peer certificate: UnknownIssuer"), "{refused:?}");
        assert_eq!(welcomes.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
        let tmp = TempDir::new("mtls");
        let certs = dev_certs(&tmp, "dev");
        let other = dev_certs(&tmp, "other");
        let (addr, welcomes) = serve(Some(&server_tls(&certs, true))).await;

        let agent = ClientConfig {
            cert: Some(certs.agent_cert.clone()),
            key: Some(certs.agent_key.clone()),
            ..https(addr, &certs.ca)
        };
        assert!(is_welcome(&hello(&agent, Some(TOKEN)).await.unwrap()));
        assert_eq!(welcomes.load(Ordering::SeqCst), 1);

        // With TLS 1.3 the client may finish its side of the handshake before the server refuses it, so the
        // refusal surfaces at connect or at the first call: either way, nothing is answered.
        let anonymous = hello(&https(addr, &certs.ca), Some(TOKEN)).await.unwrap_err();
        assert_ne!(anonymous.code(), Code::DeadlineExceeded, "refused, not left hanging: {anonymous:?}");
        let stranger = ClientConfig {
            cert: Some(other.client_cert.clone()),
            key: Some(other.client_key.clone()),
            ..https(addr, &certs.ca)
        };
        let stranger = hello(&stranger, Some(TOKEN)).await.unwrap_err();
        assert_ne!(stranger.code(), Code::DeadlineExceeded, "refused, not left hanging: {stranger:?}");
        assert_eq!(welcomes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_token_travels_on_every_call_and_a_wrong_one_is_refused() {
        let (addr, welcomes) = serve(None).await;
        let config = ClientConfig { url: format!("http://{addr}"), ..ClientConfig::default() };

        let wrong = hello(&config, Some("agent-token-2")).await.unwrap_err();
        assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
        let missing = hello(&config, None).await.unwrap_err();
        assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
        assert_eq!(welcomes.load(Ordering::SeqCst), 0);

        assert!(is_welcome(&hello(&config, Some(TOKEN)).await.unwrap()));
        assert_eq!(welcomes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn with_token_sets_the_authorization_header_and_hides_the_token() {
        use tonic::service::Interceptor;

        let mut interceptor = WithToken::new(Some("s3cret")).unwrap();
        let req = interceptor.call(Request::new(())).unwrap();
        assert_eq!(req.metadata().get("authorization").unwrap(), "Bearer s3cret");
        assert_eq!(request_token(&req), Some("s3cret"));
        assert!(!format!("{interceptor:?}").contains("s3cret"));

        let req = WithToken::new(None).unwrap().call(Request::new(())).unwrap();
        assert!(req.metadata().get("authorization").is_none());
        assert_eq!(request_token(&req), None);
    }

    #[test]
    fn bearer_refuses_tokens_that_cannot_travel() {
        assert_eq!(bearer("abc.DEF-123_~").unwrap(), "Bearer abc.DEF-123_~");
        for token in ["", "two words", "tab\t", "new\nline", "naïve"] {
            let err = bearer(token).unwrap_err();
            assert!(matches!(err, TransportError::Token { .. }), "{token:?}: {err:?}");
        }
        // The token is a secret: it never appears in the message.
        assert!(!bearer("p4ss word").unwrap_err().to_string().contains("p4ss"));
    }

    #[test]
    fn metadata_token_reads_bearer_tokens_only() {
        let token = |value: &str| {
            let mut meta = MetadataMap::new();
            meta.insert("authorization", value.parse().unwrap());
            metadata_token(&meta).map(str::to_string)
        };
        assert_eq!(token("Bearer abc"), Some("abc".into()));
        assert_eq!(token("bearer abc"), Some("abc".into()));
        assert_eq!(token("Basic YWxhZGRpbjpvcGVuc2VzYW1l"), None);
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("Bearer"), None);
        assert_eq!(metadata_token(&MetadataMap::new()), None);
    }

    #[test]
    fn tokens_equal_compares_whole_tokens() {
        assert!(tokens_equal("abc", "abc"));
        assert!(tokens_equal("", ""));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "abc\0"));
        assert!(!tokens_equal("abc", "ab"));
        assert!(!tokens_equal("", "a"));
    }

    #[test]
    fn endpoint_reports_bad_urls_and_options_early() {
        let tmp = TempDir::new("endpoint");
        let missing = tmp.0.join("missing.pem");
        let not_pem = tmp.0.join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let err = |config: ClientConfig| endpoint(&config).unwrap_err().to_string();
        let url = |url: &str| ClientConfig { url: url.into(), ..ClientConfig::default() };

        for bad in
            ["localhost:7000", "ftp://localhost:7000", "http://", "http://h:1/path", "http://h:1?q", ""]
        {
            assert!(err(url(bad)).starts_with("invalid controller URL"), "{bad:?}: {}", err(url(bad)));
        }
        assert_eq!(
            err(ClientConfig { ca: Some(missing.clone()), ..url("http://127.0.0.1:7000") }),
            "https needed for --ca (found http://127.0.0.1:7000)"
        );
        assert_eq!(
            err(ClientConfig { domain: Some("x".into()), ..url("http://127.0.0.1:7000") }),
            "https needed for --domain (found http://127.0.0.1:7000)"
        );
        let message = err(ClientConfig { ca: Some(missing.clone()), ..url("https://127.0.0.1:7000") });
        assert!(message.starts_with(&format!("reading CA file {}: ", missing.display())), "{message}");
        let message = err(ClientConfig { ca: Some(not_pem.clone()), ..url("https://127.0.0.1:7000") });
        assert!(message.contains("expected a PEM certificate"), "{message}");

        let certs = dev_certs(&tmp, "dev");
        let with_ca = ClientConfig { ca: Some(certs.ca.clone()), ..url("https://127.0.0.1:7000") };
        assert_eq!(
            err(ClientConfig { cert: Some(certs.agent_cert.clone()), ..with_ca.clone() }),
            "--cert and --key go together (found only --cert)"
        );
        let message = err(ClientConfig {
            cert: Some(certs.agent_cert.clone()),
            key: Some(certs.agent_cert.clone()),
            ..with_ca.clone()
        });
        assert!(message.contains("expected a PEM private key"), "{message}");

        endpoint(&url("http://127.0.0.1:7000")).unwrap();
        assert!(check_url("https://[::1]:7000/").unwrap(), "a trailing slash is no path");
        let mutual = ClientConfig {
            cert: Some(certs.agent_cert.clone()),
            key: Some(certs.agent_key.clone()),
            ..with_ca
        };
        let endpoint = endpoint(&mutual).unwrap();
        assert_eq!(endpoint.get_connect_timeout(), Some(CONNECT_TIMEOUT));
        assert!(endpoint.get_tcp_nodelay());
    }

    #[test]
    fn server_tls_reports_missing_and_wrong_files() {
        let tmp = TempDir::new("server-tls");
        let certs = dev_certs(&tmp, "dev");
        let message = |tls: ServerTls| tls.config().unwrap_err().to_string();

        let missing = tmp.0.join("missing.key");
        let tls = ServerTls { key: missing.clone(), ..server_tls(&certs, false) };
        assert!(message(tls).starts_with(&format!("reading server key file {}", missing.display())));
        let tls = ServerTls { cert: certs.controller_key.clone(), ..server_tls(&certs, false) };
        assert!(message(tls).contains("expected a PEM certificate"));
        let tls = ServerTls { client_ca: Some(certs.ca_key.clone()), ..server_tls(&certs, true) };
        assert!(message(tls).starts_with("client CA file"));
        server_tls(&certs, true).config().unwrap();
    }

    #[test]
    fn generate_writes_every_file_and_keeps_keys_private() {
        let tmp = TempDir::new("generate");
        let dir = tmp.0.join("certs");
        let certs = certs::generate(&dir, &["localhost".to_string()], 365, false).unwrap();
        assert_eq!(certs, DevCerts::in_dir(&dir));
        for cert in [&certs.ca, &certs.controller_cert, &certs.agent_cert, &certs.client_cert] {
            assert!(std::fs::read_to_string(cert).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
        }
        for key in [&certs.ca_key, &certs.controller_key, &certs.agent_key, &certs.client_key] {
            assert!(std::fs::read_to_string(key).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
            let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
    }

    #[test]
    fn generate_refuses_to_overwrite_without_force() {
        let tmp = TempDir::new("overwrite");
        let first = dev_certs(&tmp, "dev");
        let ca = std::fs::read(&first.ca).unwrap();

        let err = certs::generate(&first.dir, &["localhost".to_string()], 1, false).unwrap_err();
        assert!(matches!(&err, CertError::Exists { path } if *path == first.ca), "{err:?}");
        assert_eq!(std::fs::read(&first.ca).unwrap(), ca, "nothing was rewritten");

        // A key made world-readable meanwhile is private again after `force`.
        std::fs::set_permissions(&first.agent_key, std::fs::Permissions::from_mode(0o644)).unwrap();
        certs::generate(&first.dir, &["localhost".to_string()], 1, true).unwrap();
        assert_ne!(std::fs::read(&first.ca).unwrap(), ca, "a new CA was written");
        let mode = std::fs::metadata(&first.agent_key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn generate_checks_its_arguments_before_writing() {
        let tmp = TempDir::new("arguments");
        let dir = tmp.0.join("certs");
        let generate = |hosts: &[&str], days| {
            let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
            certs::generate(&dir, &hosts, days, false).unwrap_err()
        };
        assert!(matches!(generate(&[], 1), CertError::NoHosts));
        assert!(matches!(generate(&["localhost"], 0), CertError::Days { days: 0 }));
        assert!(matches!(generate(&["local host"], 1), CertError::Host { .. }));
        assert!(matches!(generate(&[""], 1), CertError::Host { .. }));
        assert!(!dir.exists(), "nothing was written");
    }
}
