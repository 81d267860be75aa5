//! Errors of the proxy registry, worded exactly as Toxiproxy words them (clients and CI suites match on them).

/// A refused API operation. [`Error::status`] gives the HTTP status Toxiproxy answers with.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    #[error("proxy not found")]
    ProxyNotFound,
    #[error("proxy already exists")]
    ProxyExists,
    #[error("toxic not found")]
    ToxicNotFound,
    #[error("toxic already exists")]
    ToxicExists,
    /// `name`, `upstream`, or `name at proxy N` for populate.
    #[error("missing required field: {0}")]
    MissingField(String),
    #[error("stream was invalid, can be either upstream or downstream")]
    InvalidStream,
    #[error("invalid toxic type")]
    InvalidToxicType,
    /// The body did not decode, or an attribute is out of range.
    #[error("bad request body: {0}")]
    BadRequest(String),
    /// The listen address could not be bound; the text is the OS error, as Toxiproxy reports it.
    #[error("{0}")]
    Listen(String),
    /// Beyond Toxiproxy: a request past a size bound (a populate of too many proxies); says which and by how much.
    #[error("{0}")]
    TooLarge(String),
    /// Beyond Toxiproxy: an operation stopped at its deadline; says how far it got.
    #[error("{0}")]
    Deadline(String),
}

impl Error {
    pub fn status(&self) -> u16 {
        match self {
            Error::ProxyNotFound | Error::ToxicNotFound => 404,
            Error::ProxyExists | Error::ToxicExists => 409,
            Error::MissingField(_)
            | Error::InvalidStream
            | Error::InvalidToxicType
            | Error::BadRequest(_) => 400,
            Error::Listen(_) => 500,
            Error::TooLarge(_) => 413,
            Error::Deadline(_) => 503,
        }
    }
}

/// Toxiproxy's wording of a bind failure: `listen tcp 127.0.0.1:26379: bind: address already in use`.
pub(crate) fn listen_error(addr: &str, err: &std::io::Error) -> Error {
    let text = err.to_string();
    // Rust appends " (os error N)" and capitalises; Go prints the bare lowercase strerror.
    let bare = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = bare.chars();
    let bare = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect::<String>(),
        None => String::new(),
    };
    let op = if err.kind() == std::io::ErrorKind::AddrInUse || err.raw_os_error().is_some() {
        "bind: "
    } else {
        ""
    };
    Error::Listen(format!("listen tcp {addr}: {op}{bare}"))
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
