//! 10,000 concurrent connections through one `chaos proxy` process hold: all open at once, counted by the
//! proxy's stats, each still carrying bytes, and all released after the clients go.
//!
//! Clients (this process), proxy and echo target run as three processes, so each stays under its open-file
//! limit: the proxy needs two descriptors per connection. Where the machine's hard RLIMIT_NOFILE is below what
//! 10,000 connections need (and cannot be raised without CAP_SYS_RESOURCE), the test uses the most the limit
//! allows and says so on stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{ChaosProxy, chaos_bin, http_json, wait_until};

struct Target(std::process::Child);

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_target() -> (Target, SocketAddr) {
    let mut child = Command::new(chaos_bin())
        .args(["demo-target", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on tcp://").unwrap().parse().unwrap();
    (Target(child), addr)
}

#[test]
fn ten_thousand_concurrent_connections_hold() {
    let _ = rlimit::Resource::NOFILE.set(1 << 20, 1 << 20);
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    rlimit::Resource::NOFILE.set(hard, hard).unwrap();
    // The proxy holds 2 descriptors per connection plus a few of its own.
    let target = 10_000u64.min(hard.saturating_sub(64) / 2);
    if target < 10_000 {
        eprintln!(
            "RLIMIT_NOFILE hard limit is {hard} and cannot be raised here: holding {target} connections \
             (10,000 need {} descriptors in the proxy)",
            20_000 + 64
        );
    }
    let (_target_process, echo) = start_target();
    let server = ChaosProxy::start(&[]);
    let body = format!(r#"{{"name":"scale","listen":"127.0.0.1:0","upstream":"{echo}"}}"#);
    let (status, proxy) = http_json(server.api, "POST", "/proxies", Some(&body));
    assert_eq!(status, 201, "{proxy}");
    let via: SocketAddr = proxy["listen"].as_str().unwrap().parse().unwrap();

    let mut clients = Vec::with_capacity(target as usize);
    for _ in 0..target {
        clients.push(support::connect(via));
    }
    let open =
        |api| http_json(api, "GET", "/proxies/scale/stats", None).1["connections_open"].as_u64().unwrap();
    wait_until("every connection open through the proxy", Duration::from_secs(60), || {
        open(server.api) == target
    });
    for client in clients.iter_mut().step_by(50) {
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        client.write_all(b"k").unwrap();
        let mut one = [0u8; 1];
        client.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"k");
    }
    drop(clients);
    wait_until("every connection released", Duration::from_secs(60), || open(server.api) == 0);
}
