//! [`ConsoleError`]: why a console request was refused or failed, with the one conversion to an HTTP status
//! and a small page that says why (escaped).

use axum::extract::rejection::FormRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// Why a console request was refused or failed. `Display` is the reason shown on the page.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No session: a page redirects to the login form, anything else (events, forms) is 401.
    #[error("log in first: this page needs a session")]
    LoginRequired {
        /// A page a browser navigates to (redirected to `/login`) rather than a request a script makes.
        page: bool,
    },
    /// The request is malformed or misses something (a field, the confirmation).
    #[error("{0}")]
    BadRequest(String),
    /// A known session may not do this: a missing or wrong CSRF token, a cross-origin form.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A body past [`super::MAX_BODY`].
    #[error("{0}")]
    TooLarge(String),
    /// The controller's state refuses it now (a halt of an unknown run, a cap).
    #[error("{0}")]
    Conflict(String),
    /// An agent or the store could not be reached.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

// === impl ConsoleError ===

impl ConsoleError {
    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::LoginRequired { page: true } => StatusCode::SEE_OTHER,
            ConsoleError::LoginRequired { page: false } => StatusCode::UNAUTHORIZED,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ConsoleError::Conflict(_) => StatusCode::CONFLICT,
            ConsoleError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::SEE_OTHER {
            return (status, [(header::LOCATION, "/login")]).into_response();
        }
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "web console request failed");
        }
        let reason = self.to_string();
        let body = super::html::error_page(status, &reason);
        let mut response =
            (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is never read: the connection cannot carry another request, and saying so
            // keeps a keep-alive client from sending its next request into a socket about to close.
            response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> ConsoleError {
        match e {
            StoreError::NotFound { .. } => ConsoleError::NotFound(e.to_string()),
            StoreError::Conflict(_) => ConsoleError::Conflict(e.to_string()),
            StoreError::Backend(_) => ConsoleError::Internal(e.to_string()),
        }
    }
}

impl From<crate::fleet::FleetError> for ConsoleError {
    fn from(e: crate::fleet::FleetError) -> ConsoleError {
        ConsoleError::Unavailable(e.to_string())
    }
}

/// A form's fields, or 400 (413 when too large) saying what was wrong with it.
pub fn form<T>(form: Result<axum::Form<T>, FormRejection>) -> Result<T, ConsoleError> {
    form.map(|axum::Form(f)| f).map_err(ConsoleError::from)
}

/// A form that could not be read: too large (413) or malformed (400), saying why.
impl From<FormRejection> for ConsoleError {
    fn from(e: FormRejection) -> ConsoleError {
        let why = e.body_text();
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ConsoleError::TooLarge(format!("the form is larger than {} bytes: {why}", super::MAX_BODY))
        } else {
            ConsoleError::BadRequest(format!("malformed form: {why}"))
        }
    }
}

/// The API's refusals keep their meaning: the gRPC code chooses the HTTP status.
impl From<tonic::Status> for ConsoleError {
    fn from(s: tonic::Status) -> ConsoleError {
        let message = s.message().to_string();
        match s.code() {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => ConsoleError::BadRequest(message),
            tonic::Code::NotFound => ConsoleError::NotFound(message),
            tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists | tonic::Code::Aborted => {
                ConsoleError::Conflict(message)
            }
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => ConsoleError::Forbidden(message),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => ConsoleError::Unavailable(message),
            _ => ConsoleError::Internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_codes_become_http_statuses_with_their_reason() {
        let e = ConsoleError::from(tonic::Status::not_found("run r-1 not found"));
        assert_eq!((e.status(), e.to_string().as_str()), (StatusCode::NOT_FOUND, "run r-1 not found"));
        let e = ConsoleError::from(tonic::Status::failed_precondition("frozen"));
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(ConsoleError::LoginRequired { page: true }.status(), StatusCode::SEE_OTHER);
        assert_eq!(ConsoleError::LoginRequired { page: false }.status(), StatusCode::UNAUTHORIZED);
    }
}
