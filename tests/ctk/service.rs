//! The live HTTP service the Chaos Toolkit corpus (tests/ctk/corpus) runs against, shared by
//! tests/ctk_differential.rs and the `ctk` benchmark (bench/src/ctk.rs, through `#[path]`): a real server on
//! 127.0.0.1:0, one thread per connection, fixed routes, no `Date` header, so the same request gives the same
//! answer to Chaos Toolkit and to `chaos run`.
//!
//! Routes (any method unless said):
//! - `/health`: 200 `ok\n` (text/plain), or 503 `down\n` after `POST /state/down` (until `POST /state/up`);
//! - `/json`: 200 application/json `{"status":"up","items":[{"name":"a","value":"1"},{"name":"b","value":"0"}],
//!   "version":3}`;
//! - `/text`: 200 `hello world\n` as `text/plain; charset=utf-8` (not exactly application/json: a text body);
//! - `/status/NNN`: status NNN, body `status NNN\n`;
//! - `/slow`: 200 `slow\n` after [`SLOW`] (for provider timeouts);
//! - `/echo`: 200 application/json `{"method", "query", "content_type", "token" (the X-Token header), "form"
//!   (an urlencoded body, decoded, in order), "json" (a JSON body, parsed)}`;
//! - `POST /state/down`, `POST /state/up`: 200 application/json `{"down": bool}`.
//!
//! Requests are bounded: head 16 KiB, body 64 KiB.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};

/// How long `/slow` takes to answer.
pub const SLOW: Duration = Duration::from_secs(3);
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;

/// A running service; it stops accepting when dropped (connections in progress finish on their own).
#[derive(Debug)]
pub struct Service {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Service {
    /// Binds 127.0.0.1:0 and serves on a thread of its own.
    pub fn start() -> std::io::Result<Service> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let down = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (down.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let d = d.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &d);
                });
            }
        });
        Ok(Service { addr, down, stop })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Back to the initial state (`/health` answers 200), as before every run.
    pub fn reset(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A URL on 127.0.0.1 where nothing listens (a port bound, read and released): connection refused.
pub fn refused_url() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(format!("http://{addr}"))
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn serve(conn: TcpStream, down: &AtomicBool) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let Some(request) = read_request(&mut reader)? else {
        return Ok(());
    };
    let (status, content_type, body) = route(&request, down);
    let mut conn = conn;
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body.as_bytes())?;
    conn.flush()
}

fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let mut head_bytes = 0;
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    head_bytes += line.len();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        head_bytes += line.len();
        if head_bytes > MAX_HEAD {
            return Err(std::io::Error::other("request head over 16 KiB"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return Err(std::io::Error::other("request body over 64 KiB"));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some(Request { method, path, query, headers, body }))
}

fn route(req: &Request, down: &AtomicBool) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain";
    const JSON: &str = "application/json";
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/state/down") | ("POST", "/state/up") => {
            down.store(req.path.ends_with("down"), Ordering::SeqCst);
            (200, JSON, json!({"down": down.load(Ordering::SeqCst)}).to_string())
        }
        (_, "/health") if down.load(Ordering::SeqCst) => (503, TEXT, "down\n".to_string()),
        (_, "/health") => (200, TEXT, "ok\n".to_string()),
        (_, "/json") => (
            200,
            JSON,
            json!({"status": "up", "items": [{"name": "a", "value": "1"}, {"name": "b", "value": "0"}],
                   "version": 3})
            .to_string(),
        ),
        (_, "/text") => (200, "text/plain; charset=utf-8", "hello world\n".to_string()),
        (_, "/slow") => {
            std::thread::sleep(SLOW);
            (200, TEXT, "slow\n".to_string())
        }
        (_, "/echo") => (200, JSON, echo(req).to_string()),
        (_, path) => match path.strip_prefix("/status/").and_then(|s| s.parse::<u16>().ok()) {
            Some(code) if (200..600).contains(&code) => (code, TEXT, format!("status {code}\n")),
            _ => (404, TEXT, "not found\n".to_string()),
        },
    }
}

fn echo(req: &Request) -> Value {
    let content_type = req.header("content-type").map(str::to_string);
    let text = String::from_utf8_lossy(&req.body).into_owned();
    let mut form = Value::Null;
    let mut parsed = Value::Null;
    match content_type.as_deref() {
        Some(ct) if ct.starts_with("application/json") => {
            parsed = serde_json::from_str(&text).unwrap_or(Value::String(text));
        }
        Some(ct) if ct.starts_with("application/x-www-form-urlencoded") => {
            let mut fields = Map::new();
            for pair in text.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                fields.insert(decode(k), Value::String(decode(v)));
            }
            form = Value::Object(fields);
        }
        _ => {}
    }
    json!({
        "method": req.method,
        "query": req.query,
        "content_type": content_type,
        "token": req.header("x-token"),
        "form": form,
        "json": parsed,
    })
}

/// application/x-www-form-urlencoded decoding (`+` is a space, `%XX` a byte).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
