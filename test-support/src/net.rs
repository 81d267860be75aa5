//! Networking fixtures: free loopback ports, commands that must succeed, and network namespaces of the test's
//! own (one, a veth pair, or hosts on a bridge), deleted on drop.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The prefix of the nftables tables the agent makes (`chaos_agent::net::TABLE_PREFIX`).
pub const AGENT_TABLE_PREFIX: &str = "chaos_agent_";

/// A free loopback port (bound and released): only for a test that must name a port to a client before the
/// server binds it. Prefer binding port 0 and reading the address back.
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"));
    listener.local_addr().unwrap_or_else(|e| panic!("no local address: {e}")).port()
}

/// Runs a command that must succeed; returns its stdout. Fails the test with the command and its stderr.
pub fn sh(args: &[&str]) -> String {
    let Some((program, rest)) = args.split_first() else { panic!("sh: no command given") };
    let out = Command::new(program)
        .args(rest)
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: cannot run {program}: {e}"));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{args:?}: stdout is not UTF-8: {e}"))
}

/// The names of the `inet` nftables tables in namespace `ns` that start with `prefix`.
pub fn nft_tables(ns: &str, prefix: &str) -> Vec<String> {
    sh(&["ip", "netns", "exec", ns, "nft", "list", "tables"])
        .lines()
        .filter_map(|l| l.strip_prefix("table inet "))
        .filter(|t| t.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Runs `f` on a thread that entered namespace `ns`: sockets it creates belong to `ns`. The namespace applies
/// to that thread only, which ends with `f`.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("cannot enter {path}: {e}"));
        f()
    })
}

/// Whether a TCP connection to `addr` succeeds within a second from inside network namespace `ns`.
pub fn connects_from(ns: &str, addr: SocketAddr) -> bool {
    in_netns(ns, move || TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
        .join()
        .unwrap_or_else(|_| panic!("the connecting thread panicked"))
}

/// A number unique among the namespaces this process makes.
fn next() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Deletes a namespace, quietly (it may be gone already).
fn delete_netns(ns: &str) {
    let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
}

/// A network namespace of the test's own with loopback up, deleted when dropped: its 127.0.0.1 ports are free
/// whatever the host runs (a user's Toxiproxy on 8474, say).
#[derive(Debug)]
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("chaos-{tag}-{}-{}", std::process::id(), next());
        sh(&["ip", "netns", "add", &name]);
        // Built after the value exists, so a failing step still deletes what was made.
        let ns = Netns(name);
        sh(&["ip", "-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_netns(&self.0);
    }
}

/// Two fresh network namespaces joined by a veth pair: `veth-a` in `a` at 10.X.Y.1/30 and `veth-b` in `b` at
/// 10.X.Y.2/30, links and loopbacks up; deleted on drop. Each pair has namespaces of its own, so addresses never
/// clash; X and Y still vary with the pid and a counter, which keeps captures readable.
#[derive(Debug)]
pub struct NetnsPair {
    pub a: String,
    pub b: String,
    pub addr_a: Ipv4Addr,
    pub addr_b: Ipv4Addr,
}

impl NetnsPair {
    /// A pair named `chaos-e2e-PID-N-{a,b}`.
    pub fn new() -> NetnsPair {
        NetnsPair::tagged("e2e")
    }

    /// A pair named `chaos-TAG-PID-N-{a,b}`.
    pub fn tagged(tag: &str) -> NetnsPair {
        let (n, pid) = (next(), std::process::id());
        let (x, y) = (64 + (pid % 128) as u8, (n % 64) as u8);
        let pair = NetnsPair {
            a: format!("chaos-{tag}-{pid}-{n}-a"),
            b: format!("chaos-{tag}-{pid}-{n}-b"),
            addr_a: Ipv4Addr::new(10, x, y * 4, 1),
            addr_b: Ipv4Addr::new(10, x, y * 4, 2),
        };
        // Built after the value exists, so a failing step still deletes what was made.
        let (a, b) = (pair.a.as_str(), pair.b.as_str());
        sh(&["ip", "netns", "add", a]);
        sh(&["ip", "netns", "add", b]);
        sh(&["ip", "-n", a, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b", "netns", b]);
        sh(&["ip", "-n", a, "addr", "add", &format!("{}/30", pair.addr_a), "dev", "veth-a"]);
        sh(&["ip", "-n", b, "addr", "add", &format!("{}/30", pair.addr_b), "dev", "veth-b"]);
        for (ns, dev) in [(a, "veth-a"), (a, "lo"), (b, "veth-b"), (b, "lo")] {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        pair
    }

    /// `port` on `a`'s address.
    pub fn a_on(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.addr_a, port))
    }

    /// `port` on `b`'s address.
    pub fn b_on(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.addr_b, port))
    }

    /// The agent's nftables tables in namespace `ns`.
    pub fn chaos_tables(&self, ns: &str) -> Vec<String> {
        nft_tables(ns, AGENT_TABLE_PREFIX)
    }
}

impl Default for NetnsPair {
    fn default() -> NetnsPair {
        NetnsPair::new()
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        delete_netns(&self.a);
        delete_netns(&self.b);
    }
}

/// Hosts on one LAN: a network namespace per host, each with `eth0` into a bridge in a switch namespace,
/// addresses 10.X.Y.(i+1)/24 in order. Deleted on drop.
#[derive(Debug)]
pub struct Lan {
    pub switch: String,
    pub hosts: Vec<(String, Ipv4Addr)>,
}

impl Lan {
    pub fn new(names: &[&str]) -> Lan {
        let (n, pid) = (next(), std::process::id());
        let (x, y) = (64 + (pid % 64) as u8, (n % 200) as u8);
        let switch = format!("chaos-lan-{pid}-{n}-sw");
        sh(&["ip", "netns", "add", &switch]);
        let mut lan = Lan { switch: switch.clone(), hosts: Vec::new() };
        sh(&["ip", "-n", &switch, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &switch, "link", "set", "br0", "up"]);
        for (i, name) in names.iter().enumerate() {
            let ns = format!("chaos-lan-{pid}-{n}-{name}");
            let addr = Ipv4Addr::new(10, x, y, i as u8 + 1);
            sh(&["ip", "netns", "add", &ns]);
            lan.hosts.push((ns.clone(), addr));
            let port = format!("p{i}");
            sh(&[
                "ip", "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &switch,
            ]);
            sh(&["ip", "-n", &switch, "link", "set", &port, "master", "br0"]);
            sh(&["ip", "-n", &switch, "link", "set", &port, "up"]);
            sh(&["ip", "-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        lan
    }

    /// The namespace and address of host `i` (in the order given to `new`).
    pub fn host(&self, i: usize) -> (&str, Ipv4Addr) {
        (&self.hosts[i].0, self.hosts[i].1)
    }

    /// The agent's nftables tables in host `i`'s namespace.
    pub fn chaos_tables(&self, i: usize) -> Vec<String> {
        nft_tables(&self.hosts[i].0, AGENT_TABLE_PREFIX)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for (ns, _) in &self.hosts {
            delete_netns(ns);
        }
        delete_netns(&self.switch);
    }
}
