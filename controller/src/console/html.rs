//! HTML for the console: [`Esc`] (everything from the store or a request goes through it), the page frame
//! ([`Frame`]: navigation, the freeze banner, the logout form), times and durations as people read them, the
//! static CSS and JavaScript, and the security headers every response carries.

use std::fmt::{self, Write as _};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::store::FreezeRecord;

/// The console's stylesheet (light and dark).
const CSS: &str = include_str!("static/console.css");
/// The run page's live view: server-sent events drawn as SVG charts.
const JS: &str = include_str!("static/live.js");

/// The Content-Security-Policy of every page: nothing from elsewhere, no inline script, forms post here only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                       base-uri 'none'";

/// `text` with `& < > " '` escaped, for element content and quoted attribute values alike.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// `text` escaped into a new string.
pub fn esc(text: &str) -> String {
    Esc(text).to_string()
}

/// A path segment or query value percent-encoded (ids in links; they are checked, but never trusted).
pub fn url_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Milliseconds since the Unix epoch as `2026-12-07 02:08:13 UTC`.
pub fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| format!("{ms} ms"), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// A duration in milliseconds as `850 ms`, `12.3 s`, `4 min 05 s` or `2 h 03 min`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// Who is looking and what the frame shows around a page's content.
pub struct Frame<'a> {
    /// The page's title (escaped here).
    pub title: &'a str,
    /// Which navigation entry is current: `runs`, `agents`, `schedules`, `audit`, `controls`.
    pub section: &'a str,
    /// The logged-in principal and their session's CSRF token (for the logout form); `None` on the login page.
    pub session: Option<(&'a str, &'a str)>,
    /// The freeze flag, shown as a banner on every page while it is set.
    pub frozen: Option<&'a FreezeRecord>,
}

impl Frame<'_> {
    /// The whole document around `body` (already HTML).
    pub fn render(&self, body: &str) -> Html<String> {
        let mut out = String::with_capacity(body.len() + 2048);
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{} · chaos console</title><link rel=\"stylesheet\" href=\"/static/console.css\">\
             <script src=\"/static/live.js\" defer></script></head><body>",
            Esc(self.title)
        );
        out.push_str("<header><a class=\"brand\" href=\"/runs\">chaos console</a><nav>");
        if let Some((principal, csrf)) = self.session {
            for (section, label) in [
                ("runs", "Runs"),
                ("agents", "Agents"),
                ("schedules", "Schedules"),
                ("audit", "Audit log"),
                ("controls", "Freeze & halt"),
            ] {
                let current = if section == self.section { " aria-current=\"page\"" } else { "" };
                let _ = write!(out, "<a href=\"/{section}\"{current}>{label}</a>");
            }
            let _ = write!(
                out,
                "</nav><form class=\"logout\" method=\"post\" action=\"/logout\">\
                 <span class=\"who\">{}</span><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <button type=\"submit\">Log out</button></form>",
                Esc(principal),
                Esc(csrf)
            );
        } else {
            out.push_str("</nav>");
        }
        out.push_str("</header>");
        if let Some(f) = self.frozen {
            let _ = write!(
                out,
                "<p class=\"banner frozen\" role=\"status\">Frozen by {} since {}: {}. No run or fault starts \
                 until unfrozen.</p>",
                Esc(&f.by),
                utc(f.since_ms),
                Esc(&f.reason)
            );
        }
        let _ = write!(out, "<main><h1>{}</h1>{body}</main></body></html>", Esc(self.title));
        Html(out)
    }
}

/// The page of a refused or failed request: its status and why.
pub fn error_page(status: StatusCode, reason: &str) -> String {
    let title = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("error"));
    let frame = Frame { title: &title, section: "", session: None, frozen: None };
    let body = format!(
        "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"/runs\">Runs</a> · <a href=\"/login\">Log in</a></p>",
        Esc(reason)
    );
    frame.render(&body).0
}

/// `GET /static/console.css`
pub async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], CSS)
        .into_response()
}

/// `GET /static/live.js`
pub async fn js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], JS)
        .into_response()
}

/// Adds the headers every response carries unless its handler set its own (the report sets its CSP and
/// framing): a strict CSP, no sniffing, no referrer sent elsewhere, no framing, no caching of pages holding run data.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let defaults = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not `no-referrer`: with it, browsers send `Origin: null` on the console's own form posts, which the
        // Origin check must refuse. `same-origin` tells nothing to other sites.
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_every_character_that_could_leave_text_or_an_attribute() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(esc("plain ünïcode"), "plain ünïcode");
        assert_eq!(url_part("r-1/../x y"), "r-1%2F..%2Fx%20y");
    }

    #[test]
    fn times_and_durations_read_as_people_write_them() {
        assert_eq!(utc(1_796_609_293_000), "2026-12-07 02:08:13 UTC");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_340), "12.3 s");
        assert_eq!(duration(245_000), "4 min 05 s");
        assert_eq!(duration(7_380_000), "2 h 03 min");
    }
}
