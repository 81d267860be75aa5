//! The controller's errors: [`ApiError`] for a refused or failed call, with the one conversion to
//! `tonic::Status` (a status code per variant), [`ServerError`] for a controller that cannot start or serve,
//! and [`FileError`] for its data directory and token files.

use std::net::SocketAddr;
use std::path::PathBuf;

use tonic::Status;

use crate::fleet::FleetError;
use crate::store::StoreError;

/// Why an API call was refused or failed. `Display` is the status message; [`From<ApiError> for Status`] is
/// the only place a status code is chosen.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request itself is wrong (a bad experiment, a bad cron expression, no experiment given).
    #[error("{0}")]
    InvalidArgument(String),
    /// Something named in the request does not exist (`what` is `run`, `experiment`, `schedule`).
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The request is fine but the controller's state refuses it now (frozen, a lock, a cap, local effects).
    #[error("{0}")]
    FailedPrecondition(String),
    /// No token, or one this controller does not know.
    #[error("{0}")]
    Unauthenticated(String),
    /// A known token that may not do this (an agent token scoped to another id).
    #[error("{0}")]
    PermissionDenied(String),
    /// An agent dialled but sent no hello in time.
    #[error("no hello within {} s", .0.as_secs())]
    NoHello(std::time::Duration),
    /// The first message of an agent's stream was not a hello.
    #[error("the first message on the stream must be a hello")]
    NotHello,
    /// The agent closed its stream before its hello.
    #[error("the agent closed the stream before its hello")]
    ClosedBeforeHello,
    /// An agent or a fleet request failed.
    #[error("{0}")]
    Fleet(#[from] FleetError),
    /// The store failed, or refused a duplicate.
    #[error("{0}")]
    Store(#[from] StoreError),
}

// === impl From<ApiError> for Status ===

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let message = e.to_string();
        match e {
            ApiError::InvalidArgument(_) => Status::invalid_argument(message),
            ApiError::NotFound { .. } => Status::not_found(message),
            ApiError::FailedPrecondition(_) => Status::failed_precondition(message),
            ApiError::Unauthenticated(_) => Status::unauthenticated(message),
            ApiError::PermissionDenied(_) => Status::permission_denied(message),
            ApiError::NoHello(_) => Status::deadline_exceeded(message),
            ApiError::NotHello => Status::invalid_argument(message),
            ApiError::ClosedBeforeHello => Status::cancelled(message),
            ApiError::Fleet(e) => match e {
                FleetError::NotConnected { .. }
                | FleetError::StreamClosed { .. }
                | FleetError::Disconnected { .. }
                | FleetError::RevertUndelivered { .. } => Status::unavailable(message),
                FleetError::Timeout { .. } => Status::deadline_exceeded(message),
                FleetError::Refused { .. } | FleetError::NoProbes { .. } => {
                    Status::failed_precondition(message)
                }
                FleetError::ApplyFailed { .. } | FleetError::RevertFailed { .. } => Status::aborted(message),
                FleetError::SessionTaken { .. } => Status::already_exists(message),
                FleetError::WrongAnswer { .. } | FleetError::Store(_) => Status::internal(message),
            },
            ApiError::Store(e) => match e {
                StoreError::NotFound { .. } => Status::not_found(message),
                StoreError::Conflict(_) => Status::already_exists(message),
                StoreError::Backend(_) => Status::internal(message),
            },
        }
    }
}

/// Why a controller could not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory or a token file is unusable.
    #[error("{0}")]
    Files(#[from] FileError),
    /// The store could not be opened or read.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// The TLS files could not be read or used.
    #[error("{0}")]
    Tls(String),
    /// The gRPC server failed.
    #[error("serving: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Why the data directory or a token file is unusable; each says which file (and line).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("reading token file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("creating {}: {source}", path.display())]
    Create { path: PathBuf, source: std::io::Error },
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("creating the directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    /// A line of a token file that is not `TOKEN` or `NAME TOKEN` with a long enough token.
    #[error("{}:{line}: {problem}", path.display())]
    Line { path: PathBuf, line: usize, problem: String },
    #[error("{}: no token in the file", path.display())]
    NoToken { path: PathBuf },
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::Code;

    use super::*;

    fn fleet(e: FleetError) -> Code {
        Status::from(ApiError::from(e)).code()
    }

    #[test]
    fn each_error_has_its_status_code_and_keeps_its_message() {
        let agent = || "web-1".to_string();
        assert_eq!(fleet(FleetError::NotConnected { agent: agent() }), Code::Unavailable);
        assert_eq!(
            fleet(FleetError::Timeout { agent: agent(), timeout: Duration::from_secs(1) }),
            Code::DeadlineExceeded
        );
        assert_eq!(
            fleet(FleetError::Refused { agent: agent(), detail: "policy".into() }),
            Code::FailedPrecondition
        );
        assert_eq!(fleet(FleetError::ApplyFailed { agent: agent(), detail: "no".into() }), Code::Aborted);
        let status = Status::from(ApiError::NotFound { what: "run", id: "r-1".into() });
        assert_eq!((status.code(), status.message()), (Code::NotFound, "run r-1 not found"));
        let status = Status::from(ApiError::Store(StoreError::Conflict("schedule name taken".into())));
        assert_eq!((status.code(), status.message()), (Code::AlreadyExists, "schedule name taken"));
        let status = Status::from(ApiError::from(FleetError::NotConnected { agent: agent() }));
        assert_eq!(status.message(), "agent web-1 is not connected");
        let undelivered = FleetError::RevertUndelivered {
            cause: Box::new(FleetError::Disconnected { agent: agent() }),
            within: Duration::from_millis(1500),
        };
        assert_eq!(
            undelivered.to_string(),
            "agent web-1 disconnected before answering; renewals stopped, so its lease on the agent ends it within \
             1.5 s"
        );
    }
}
