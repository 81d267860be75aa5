//! Logging in to the console: a browser posts an API token (the same tokens as the gRPC API, read from the
//! same file) through a form and gets a session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` over TLS); the
//! token itself never appears in a URL or a page. Each session has its own CSRF token, which every POST must
//! carry ([`Authed::check_csrf`]); a POST whose `Origin` (or `Sec-Fetch-Site`) says it came from another site
//! is refused before any handler runs ([`same_origin`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use chaos_proto::transport::tokens_equal;

use super::Console;
use super::error::ConsoleError;
use super::html::{Esc, Frame};

/// The session cookie's name.
pub const COOKIE: &str = "chaos_session";
/// A session ends this long after its login, however busy.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// A session unused for this long ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// Sessions kept at most; a login past it ends the least recently used one.
pub const MAX_SESSIONS: usize = 4096;
/// The longest token a login form may carry (tokens are 16 to a few hundred characters).
const MAX_TOKEN: usize = 1024;

/// One logged-in browser.
#[derive(Clone, Debug)]
struct Session {
    /// The API token's name: who the audit log says acted.
    principal: String,
    /// Every POST of this session carries it.
    csrf: String,
    created: Instant,
    last_used: Instant,
}

/// The console's sessions, by session id (256 random bits, hex).
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session for `principal`: its id and CSRF token.
    fn create(&self, principal: String) -> (String, String) {
        let id = crate::server::auth::random_token();
        let csrf = crate::server::auth::random_token();
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| alive(s, now));
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        let session = Session { principal, csrf: csrf.clone(), created: now, last_used: now };
        sessions.insert(id.clone(), session);
        (id, csrf)
    }

    /// The live session `id`, marked used now.
    fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut sessions = self.lock();
        let session = sessions.get_mut(id)?;
        if !alive(session, now) {
            sessions.remove(id);
            return None;
        }
        session.last_used = now;
        Some(session.clone())
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// How many sessions are held (expired ones included until the next login sweeps them).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.created) < SESSION_LIFETIME && now.duration_since(s.last_used) < SESSION_IDLE
}

/// The value of cookie `name` in `headers`, if sent.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A request from a logged-in browser: who, and the session's CSRF token.
#[derive(Clone, Debug)]
pub struct Authed {
    pub principal: String,
    pub csrf: String,
    session: String,
}

impl Authed {
    /// Refuses (403) a form whose CSRF token is missing or not this session's.
    pub fn check_csrf(&self, sent: &str) -> Result<(), ConsoleError> {
        if sent.is_empty() {
            return Err(ConsoleError::Forbidden(
                "the form has no CSRF token: reload the page and retry".into(),
            ));
        }
        if !tokens_equal(sent, &self.csrf) {
            return Err(ConsoleError::Forbidden(
                "the form's CSRF token is not this session's: reload the page and retry".into(),
            ));
        }
        Ok(())
    }
}

impl FromRequestParts<Arc<Console>> for Authed {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, console: &Arc<Console>) -> Result<Authed, ConsoleError> {
        // A browser navigating to a page is sent to the login form; scripts and forms get a plain 401.
        let page = parts.method == Method::GET && !parts.uri.path().ends_with("/events");
        let refused = || ConsoleError::LoginRequired { page };
        let id = cookie(&parts.headers, COOKIE).ok_or_else(refused)?;
        let session = console.sessions.get(id).ok_or_else(refused)?;
        Ok(Authed { principal: session.principal, csrf: session.csrf, session: id.to_string() })
    }
}

/// Refuses (403) a POST another site made the browser send: `Sec-Fetch-Site: cross-site` / `same-site`, or an
/// `Origin` that is not this console's (`http(s)://` + the `Host` it was asked for). Clients that send
/// neither header (curl) pass here and still need a session and its CSRF token.
pub async fn same_origin(State(console): State<Arc<Console>>, request: Request, next: Next) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let headers = request.headers();
        if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
            && (site == "cross-site" || site == "same-site")
        {
            return ConsoleError::Forbidden(format!("cross-site request refused (Sec-Fetch-Site: {site})"))
                .into_response();
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let scheme = if console.secure { "https" } else { "http" };
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
            let expected = format!("{scheme}://{host}");
            if host.is_empty() || origin.as_bytes() != expected.as_bytes() {
                let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
                return ConsoleError::Forbidden(format!(
                    "cross-origin request refused: Origin {origin:?} is not this console ({expected:?})"
                ))
                .into_response();
            }
        }
    }
    next.run(request).await
}

/// The login form's fields.
#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `GET /login`
pub async fn login_page() -> Response {
    login_form(None).into_response()
}

fn login_form(problem: Option<&str>) -> axum::response::Html<String> {
    let problem =
        problem.map(|p| format!("<p class=\"error\" role=\"alert\">{}</p>", Esc(p))).unwrap_or_default();
    let body = format!(
        "{problem}<form class=\"login\" method=\"post\" action=\"/login\">\
         <label for=\"token\">API token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required \
         maxlength=\"{MAX_TOKEN}\"><button id=\"login\" type=\"submit\">Log in</button></form>\
         <p class=\"hint\">A token from the controller's API token file (<code>api.token</code>); the audit log \
         names you by the token's name.</p>"
    );
    Frame { title: "Log in", section: "", session: None, frozen: None }.render(&body)
}

/// `POST /login`: a valid API token opens a session (cookie) and goes to the runs; anything else is 401 with
/// the form again.
pub async fn login(
    State(console): State<Arc<Console>>,
    form: Result<axum::Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let token = match form {
        Ok(axum::Form(form)) => form.token,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let token = token.trim();
    let principal = (!token.is_empty() && token.len() <= MAX_TOKEN)
        .then(|| console.api.tokens.api_principal_of(token))
        .flatten();
    let Some(principal) = principal else {
        tracing::warn!("web console: a login with an invalid API token was refused");
        let page = login_form(Some("invalid API token"));
        return (axum::http::StatusCode::UNAUTHORIZED, page).into_response();
    };
    let (id, _) = console.sessions.create(principal.clone());
    console.api.audit(&principal, "console_login", "logged in to the web console".into());
    let secure = if console.secure { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/runs")).into_response()
}

/// The logout form's fields.
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`: ends the session (with its CSRF token) and clears the cookie.
pub async fn logout(
    State(console): State<Arc<Console>>,
    authed: Authed,
    form: Result<axum::Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ConsoleError> {
    let form = super::error::form(form)?;
    authed.check_csrf(&form.csrf)?;
    console.sessions.remove(&authed.session);
    let secure = if console.secure { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; chaos_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn sessions_are_capped_and_end_when_removed() {
        let sessions = Sessions::default();
        let (id, csrf) = sessions.create("alice".into());
        assert_eq!(id.len(), 64);
        assert_ne!(id, csrf);
        assert_eq!(sessions.get(&id).unwrap().principal, "alice");
        sessions.remove(&id);
        assert!(sessions.get(&id).is_none());
        for _ in 0..MAX_SESSIONS + 3 {
            sessions.create("bob".into());
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
    }

    #[test]
    fn csrf_tokens_must_match_the_session() {
        let authed = Authed { principal: "a".into(), csrf: "x".repeat(64), session: "s".into() };
        assert!(authed.check_csrf(&"x".repeat(64)).is_ok());
        assert!(authed.check_csrf("").unwrap_err().to_string().contains("no CSRF token"));
        assert!(authed.check_csrf(&"y".repeat(64)).unwrap_err().to_string().contains("not this session's"));
    }
}
