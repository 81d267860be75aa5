//! `chaos controller --ui-listen`: the binary serves the web console on its own listener (port 0 here), says
//! where on stdout, refuses a browser without a session, logs one in with a token from `api.token`, and stops
//! on SIGTERM. The console itself is tested in `controller/tests/console.rs` and `console_browser.rs`.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use support::{chaos_in, temp_dir, wait_within};

/// One HTTP/1.1 request over a plain socket with `headers`: the whole reply.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> String {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn the_controller_serves_its_console_on_ui_listen_behind_a_login() {
    let dir = temp_dir("console", "cli");
    let mut controller = chaos_in(None)
        .args(["controller", "--listen", "127.0.0.1:0", "--ui-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(controller.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("listening on 127.0.0.1:"), "{first}");
    let second = lines.next().unwrap().unwrap();
    let ui: SocketAddr =
        second.strip_prefix("web console on http://").unwrap_or_else(|| panic!("{second}")).parse().unwrap();
    assert_ne!(ui.port(), 0);

    let refused = request(ui, "GET", "/runs", "", "");
    assert!(refused.starts_with("HTTP/1.1 303"), "{refused}");
    assert!(refused.to_lowercase().contains("location: /login"), "{refused}");
    let token = std::fs::read_to_string(dir.join("api.token")).unwrap().trim().to_string();
    let form = format!("token={token}");
    let login = request(ui, "POST", "/login", "Content-Type: application/x-www-form-urlencoded\r\n", &form);
    assert!(login.starts_with("HTTP/1.1 303"), "{login}");
    let cookie = login
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let runs = request(ui, "GET", "/runs", &format!("Cookie: {cookie}\r\n"), "");
    assert!(runs.starts_with("HTTP/1.1 200"), "{runs}");
    assert!(runs.contains("<h1>Runs</h1>") && runs.contains("No runs."), "{runs}");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(controller.id() as i32), nix::sys::signal::SIGTERM)
        .unwrap();
    let out = wait_within(controller, Duration::from_secs(15));
    assert!(out.status.success(), "{out:?}");
    assert!(TcpStream::connect(ui).is_err(), "the console stopped with the controller");
    std::fs::remove_dir_all(&dir).unwrap();
}
