//! Network faults against real kernel networking: two namespaces per test joined by a veth pair, traffic from
//! threads that entered them, faults applied inside namespace a. Needs root, nft and tc.

// Helpers panic on setup failure like the tests that call them.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chaos_agent::AgentError;
use chaos_agent::faults::FaultKind;
use chaos_agent::journal::{Journal, ReplayMode};
use chaos_agent::net::{
    Bandwidth, Capabilities, Direction, Filter, Latency, Loss, NetTarget, Partition, Protocol, QDISC_HANDLE,
    Support, TABLE_PREFIX,
};
use chaos_agent::undo::replay;
use chaos_test_support::net::{in_netns as in_ns, nft_tables};
use chaos_test_support::{NetnsPair, sh};
use common::TempDir;

/// How long a connection attempt may take before it counts as dropped: a SYN that is dropped never completes.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// Two fresh namespaces `a` and `b` joined by `veth-a` (10.X.Y.1/30, in a) and `veth-b` (10.X.Y.2/30, in b),
/// links and loopbacks up ([`NetnsPair`], its fields through `Deref`), and a state directory; everything deleted
/// on drop.
struct Pair {
    net: NetnsPair,
    state: TempDir,
}

impl Pair {
    fn new() -> Pair {
        Pair { net: NetnsPair::tagged("t"), state: TempDir::new() }
    }

    fn journal(&self) -> Journal {
        Journal::open(&self.state.path).unwrap()
    }

    /// Tables whose name starts with the crate's prefix, in namespace `ns`.
    fn chaos_tables(&self, ns: &str) -> Vec<String> {
        nft_tables(ns, TABLE_PREFIX)
    }

    fn records(&self) -> usize {
        let (records, unreadable) = chaos_agent::journal::list(&self.state.path);
        assert!(unreadable.is_empty(), "{unreadable:?}");
        records.len()
    }
}

impl std::ops::Deref for Pair {
    type Target = NetnsPair;

    fn deref(&self) -> &NetnsPair {
        &self.net
    }
}

/// The root qdisc of `device` in `ns`, as `KIND HANDLE` (`noqueue 0:`).
fn root_qdisc(ns: &str, device: &str) -> String {
    let shown = sh(&["ip", "netns", "exec", ns, "tc", "qdisc", "show", "dev", device, "root"]);
    shown.split_whitespace().skip(1).take(2).collect::<Vec<_>>().join(" ")
}

fn listen(ns: &str, addr: SocketAddr) -> TcpListener {
    in_ns(ns, move || TcpListener::bind(addr).unwrap()).join().unwrap()
}

/// Whether a TCP connection from namespace `ns` to `addr` completes within [`CONNECT_TIMEOUT`].
fn connects(ns: &str, addr: SocketAddr) -> bool {
    in_ns(ns, move || TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).is_ok()).join().unwrap()
}

fn caps() -> Capabilities {
    let caps = Capabilities::probe();
    assert!(caps.nft.is_ok() && caps.tc.is_ok() && caps.ip.is_ok(), "{caps:?}");
    caps
}

fn egress_to(hosts: &[String], ports: &[u16], protocol: Protocol) -> Filter {
    Filter { direction: Direction::Egress, hosts: hosts.to_vec(), ports: ports.to_vec(), protocol }
}

#[test]
fn partition_egress_drops_only_matching_connections_until_reverted() {
    let pair = Pair::new();
    let (journal, caps) = (pair.journal(), caps());
    let _listeners = [listen(&pair.b, pair.b_on(7001)), listen(&pair.b, pair.b_on(7002))];
    assert!(connects(&pair.a, pair.b_on(7001)), "before the fault");

    // An IPv6 network in the list too: the table then has a rule per family.
    let hosts = [pair.addr_b.to_string(), "fd00::/8".to_string()];
    let spec = Partition { netns: Some(pair.a.clone()), filter: egress_to(&hosts, &[7001], Protocol::Tcp) };
    let handle = spec.apply(&journal, &caps).unwrap();
    assert_eq!(handle.kind(), FaultKind::NetworkPartition);
    assert_eq!(handle.netns(), Some(pair.a.as_str()));
    let table = handle.table().unwrap().to_string();
    assert!(table.starts_with(TABLE_PREFIX), "{table}");
    assert_eq!(pair.chaos_tables(&pair.a), std::slice::from_ref(&table));
    let listed = sh(&["ip", "netns", "exec", &pair.a, "nft", "list", "table", "inet", &table]);
    assert!(
        listed.contains("ip6 daddr fd00::/8") && listed.contains("hook output priority mangle"),
        "{listed}"
    );
    assert_eq!(pair.records(), 1);

    assert!(!connects(&pair.a, pair.b_on(7001)), "a port in the filter is cut");
    assert!(connects(&pair.a, pair.b_on(7002)), "another port still works");

    handle.revert().unwrap();
    handle.revert().unwrap();
    assert!(handle.is_reverted());
    assert!(connects(&pair.a, pair.b_on(7001)), "after the revert");
    assert!(pair.chaos_tables(&pair.a).is_empty());
    assert_eq!(pair.records(), 0);

    // Without ports, every connection to the host is cut; dropping the handle reverts.
    let spec = Partition { netns: Some(pair.a.clone()), filter: egress_to(&hosts[..1], &[], Protocol::Any) };
    let handle = spec.apply(&journal, &caps).unwrap();
    assert!(!connects(&pair.a, pair.b_on(7002)));
    drop(handle);
    assert!(connects(&pair.a, pair.b_on(7002)));
    assert!(pair.chaos_tables(&pair.a).is_empty());
    assert_eq!(pair.records(), 0);
}

#[test]
fn partition_ingress_drops_what_arrives() {
    let pair = Pair::new();
    let (journal, caps) = (pair.journal(), caps());
    let _in_a = [listen(&pair.a, pair.a_on(7001)), listen(&pair.a, pair.a_on(7002))];
    let _in_b = listen(&pair.b, pair.b_on(7003));

    // Ingress with ports: connections others open to those local ports.
    let filter = Filter { direction: Direction::Ingress, ports: vec![7001], ..Filter::default() };
    let handle = Partition { netns: Some(pair.a.clone()), filter }.apply(&journal, &caps).unwrap();
    assert!(!connects(&pair.b, pair.a_on(7001)), "b to a local port in the filter");
    assert!(connects(&pair.b, pair.a_on(7002)), "b to another local port");
    assert!(connects(&pair.a, pair.b_on(7003)), "a's own connections: replies are not matched by port");
    handle.revert().unwrap();
    assert!(connects(&pair.b, pair.a_on(7001)));

    // Ingress from a host: a's SYN leaves, b's SYN-ACK is dropped on the way in.
    let filter =
        Filter { direction: Direction::Ingress, hosts: vec![pair.addr_b.to_string()], ..Filter::default() };
    let handle = Partition { netns: Some(pair.a.clone()), filter }.apply(&journal, &caps).unwrap();
    assert!(!connects(&pair.a, pair.b_on(7003)));
    assert!(!connects(&pair.b, pair.a_on(7002)));
    handle.revert().unwrap();
    assert!(connects(&pair.a, pair.b_on(7003)));
    assert!(pair.chaos_tables(&pair.a).is_empty());
}

/// Sends `count` numbered datagrams of batch `batch` from a to b:9001, paced so the receiver's buffer never
/// overflows; returns how many distinct ones arrived.
fn udp_batch(pair: &Pair, batch: u8, count: u16) -> usize {
    let (to, from) = (pair.b_on(9001), pair.a_on(0));
    let socket = in_ns(&pair.b, move || UdpSocket::bind(to).unwrap()).join().unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let sent = Arc::new(AtomicBool::new(false));
    let receiver = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            let mut seen = vec![false; usize::from(count)];
            let mut buf = [0u8; 16];
            let deadline = Instant::now() + common::DEADLINE;
            loop {
                match socket.recv(&mut buf) {
                    Ok(3) if buf[0] == batch => {
                        seen[usize::from(u16::from_be_bytes([buf[1], buf[2]]))] = true
                    }
                    Ok(_) => {}
                    // Quiet for 50 ms after the last send: everything that will arrive has arrived.
                    Err(_) if sent.load(Ordering::SeqCst) || Instant::now() > deadline => break,
                    Err(_) => {}
                }
            }
            seen.iter().filter(|s| **s).count()
        })
    };
    in_ns(&pair.a, move || {
        let socket = UdpSocket::bind(from).unwrap();
        for seq in 0..count {
            let [hi, lo] = seq.to_be_bytes();
            // A datagram dropped on egress fails with EPERM: netfilter reports local drops to the sender.
            let _ = socket.send_to(&[batch, hi, lo], to);
            if seq % 50 == 49 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    sent.store(true, Ordering::SeqCst);
    receiver.join().unwrap()
}

#[test]
fn loss_drops_the_share_asked_for() {
    let pair = Pair::new();
    let (journal, caps) = (pair.journal(), caps());
    let spec = Loss {
        netns: Some(pair.a.clone()),
        filter: egress_to(&[pair.addr_b.to_string()], &[9001], Protocol::Udp),
        percent: 30.0,
    };
    let handle = spec.apply(&journal, &caps).unwrap();
    assert_eq!(handle.kind(), FaultKind::NetworkLoss);
    let (n, p) = (2000.0_f64, 0.3_f64);
    let received = udp_batch(&pair, 1, 2000) as f64;
    let (mean, sigma) = (n * (1.0 - p), (n * p * (1.0 - p)).sqrt());
    assert!((received - mean).abs() <= 5.0 * sigma, "{received} received, {mean} ± {} expected", 5.0 * sigma);

    handle.revert().unwrap();
    let received = udp_batch(&pair, 2, 2000);
    assert!(received >= 1990, "{received} of 2000 after the revert");
    assert!(pair.chaos_tables(&pair.a).is_empty());
}

/// Sends `size` bytes over TCP from a to b:7100 and returns how long b took to receive them, from accept to EOF.
fn transfer(pair: &Pair, size: usize) -> Duration {
    let listener = listen(&pair.b, pair.b_on(7100));
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let started = Instant::now();
        let mut received = Vec::with_capacity(size);
        stream.read_to_end(&mut received).unwrap();
        (received.len(), started.elapsed())
    });
    let to = pair.b_on(7100);
    in_ns(&pair.a, move || {
        let mut stream = TcpStream::connect(to).unwrap();
        stream.write_all(&vec![7u8; size]).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
    })
    .join()
    .unwrap();
    let (received, took) = server.join().unwrap();
    assert_eq!(received, size);
    took
}

#[test]
fn bandwidth_limits_the_rate_and_refuses_a_foreign_qdisc() {
    let pair = Pair::new();
    let (journal, caps) = (pair.journal(), caps());
    assert!(caps.tbf.is_ok(), "{caps:?}");
    assert_eq!(root_qdisc(&pair.a, "veth-a"), "noqueue 0:");
    let spec = Bandwidth {
        netns: Some(pair.a.clone()),
        device: "veth-a".into(),
        rate: "8mbit".into(),
        burst_bytes: None,
        latency_ms: None,
    };
    let handle = spec.apply(&journal, &caps).unwrap();
    assert_eq!(handle.device(), Some("veth-a"));
    assert_eq!(
        handle.target(),
        &NetTarget::Qdisc {
            netns: Some(pair.a.clone()),
            device: "veth-a".into(),
            handle: QDISC_HANDLE.into()
        }
    );
    assert_eq!(root_qdisc(&pair.a, "veth-a"), format!("tbf {QDISC_HANDLE}"));

    // 1 MiB at 8 Mbit/s takes 1.05 s; a lower bound is physics, whatever else the machine does.
    let size = 1 << 20;
    let took = transfer(&pair, size);
    let floor = Duration::from_secs_f64(size as f64 * 8.0 / 8e6 * 0.8);
    assert!(took >= floor, "1 MiB in {took:?}, at least {floor:?} expected at 8 Mbit/s");

    // One shaping fault per device.
    let err = spec.apply(&journal, &caps).unwrap_err();
    assert!(matches!(err, AgentError::Forbidden { .. }), "{err}");
    assert!(err.to_string().contains("another chaos fault's"), "{err}");
    assert_eq!(pair.records(), 1);

    handle.revert().unwrap();
    handle.revert().unwrap();
    assert_eq!(root_qdisc(&pair.a, "veth-a"), "noqueue 0:");
    assert_eq!(pair.records(), 0);

    // A qdisc someone else added is refused and left as it is.
    let foreign = ["tc", "qdisc", "add", "dev", "veth-b", "root", "handle", "1234:", "tbf"];
    sh(&[
        &["ip", "netns", "exec", &pair.b][..],
        &foreign,
        &["rate", "1gbit", "burst", "32kb", "latency", "50ms"],
    ]
    .concat());
    let spec = Bandwidth { netns: Some(pair.b.clone()), device: "veth-b".into(), ..spec };
    let err = spec.apply(&journal, &caps).unwrap_err();
    assert!(matches!(err, AgentError::Forbidden { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("dev veth-b") && message.contains("root qdisc tbf 1234:"), "{message}");
    assert_eq!(root_qdisc(&pair.b, "veth-b"), "tbf 1234:");
    assert_eq!(pair.records(), 0);
}

#[test]
fn latency_is_refused_without_netem_and_delays_with_it() {
    let pair = Pair::new();
    let (journal, caps) = (pair.journal(), caps());
    let spec = Latency {
        netns: Some(pair.a.clone()),
        device: "veth-a".into(),
        delay_ms: 100,
        jitter_ms: 0,
        correlation: 0.0,
    };
    match &caps.netem {
        Support::Missing(why) => {
            assert!(why.contains("netem"), "{why}");
            let err = spec.apply(&journal, &caps).unwrap_err();
            assert!(matches!(err, AgentError::Unsupported { .. }), "{err}");
            let message = err.to_string();
            assert!(message.starts_with("network-latency is not supported on this host: "), "{message}");
            assert!(message.contains("CONFIG_NET_SCH_NETEM"), "{message}");
            assert_eq!(root_qdisc(&pair.a, "veth-a"), "noqueue 0:");
            assert_eq!(pair.records(), 0);

            // Told netem exists, apply gets as far as tc, which fails after the record was written: the undo runs
            // and the record goes, so nothing is left.
            let pretend = Capabilities { netem: Support::Ok, ..caps.clone() };
            let err = spec.apply(&journal, &pretend).unwrap_err();
            assert!(matches!(err, AgentError::Command { .. }), "{err}");
            assert_eq!(root_qdisc(&pair.a, "veth-a"), "noqueue 0:");
            assert_eq!(pair.records(), 0);
        }
        Support::Ok => {
            let _listener = listen(&pair.b, pair.b_on(7200));
            let handle = spec.apply(&journal, &caps).unwrap();
            assert_eq!(root_qdisc(&pair.a, "veth-a"), format!("netem {QDISC_HANDLE}"));
            // A connect is one round trip; the SYN leaves a 100 ms late.
            let to = pair.b_on(7200);
            let took = in_ns(&pair.a, move || {
                let started = Instant::now();
                TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap();
                started.elapsed()
            })
            .join()
            .unwrap();
            assert!(took >= Duration::from_millis(100), "connected in {took:?}");
            handle.revert().unwrap();
            assert_eq!(root_qdisc(&pair.a, "veth-a"), "noqueue 0:");
        }
    }
}

#[test]
fn probe_reports_what_the_host_has_without_touching_its_network() {
    let host_tables = sh(&["nft", "list", "tables"]);
    let host_lo = sh(&["tc", "qdisc", "show", "dev", "lo"]);
    let caps = Capabilities::probe();
    assert_eq!(caps.nft, Support::Ok, "{caps:?}");
    assert_eq!(caps.tbf, Support::Ok, "{caps:?}");
    caps.require(FaultKind::NetworkPartition).unwrap();
    caps.require(FaultKind::NetworkLoss).unwrap();
    caps.require(FaultKind::NetworkBandwidth).unwrap();
    match caps.netem.reason() {
        Some(why) => {
            let err = caps.require(FaultKind::NetworkLatency).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains("netem"), "{err}");
        }
        None => caps.require(FaultKind::NetworkLatency).unwrap(),
    }
    assert_eq!(sh(&["nft", "list", "tables"]), host_tables);
    assert_eq!(sh(&["tc", "qdisc", "show", "dev", "lo"]), host_lo);
    let json = serde_json::to_value(&caps).unwrap();
    assert_eq!(json["nft"], "ok");
}

#[test]
fn a_leaked_fault_is_reverted_by_replaying_the_journal() {
    let pair = Pair::new();
    let (journal, caps) = (pair.journal(), caps());
    let _listener = listen(&pair.b, pair.b_on(7300));
    let spec = Partition {
        netns: Some(pair.a.clone()),
        filter: egress_to(&[pair.addr_b.to_string()], &[], Protocol::Tcp),
    };
    let handle = spec.apply(&journal, &caps).unwrap();
    let table = handle.table().unwrap().to_string();
    // The owner "dies": nothing reverts the fault but the record it left.
    std::mem::forget(handle);
    assert!(!connects(&pair.a, pair.b_on(7300)));

    let report = replay(&pair.state.path, ReplayMode::All);
    assert_eq!(report.reverted.len(), 1, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.reverted[0].kind, "network-partition");
    assert!(!pair.chaos_tables(&pair.a).contains(&table));
    assert!(connects(&pair.a, pair.b_on(7300)));
    assert_eq!(pair.records(), 0);
}

#[test]
fn bad_input_is_refused_before_anything_changes() {
    let pair = Pair::new();
    let (journal, caps) = (pair.journal(), caps());
    let ns = Some(pair.a.clone());
    let partition = |hosts: &[&str]| Partition {
        netns: ns.clone(),
        filter: Filter { hosts: hosts.iter().map(|h| h.to_string()).collect(), ..Filter::default() },
    };
    let loss = |percent: f64| Loss { netns: ns.clone(), filter: Filter::default(), percent };
    let bandwidth = |device: &str, rate: &str| Bandwidth {
        netns: ns.clone(),
        device: device.into(),
        rate: rate.into(),
        burst_bytes: None,
        latency_ms: None,
    };
    let refusals: Vec<(Result<_, AgentError>, &str)> = vec![
        (
            partition(&["10.0.0.0/33"]).apply(&journal, &caps),
            "invalid hosts: \"10.0.0.0/33\": prefix length \"33\" is out of range (expected 0 to 32 for IPv4)",
        ),
        (
            partition(&["10.0.0.1", "not-an-ip"]).apply(&journal, &caps),
            "invalid hosts: \"not-an-ip\" is not an IP",
        ),
        (loss(0.0).apply(&journal, &caps), "invalid percent: expected above 0 and at most 100, found 0"),
        (loss(101.0).apply(&journal, &caps), "invalid percent: expected above 0 and at most 100, found 101"),
        (loss(1.234).apply(&journal, &caps), "invalid percent: expected at most two decimals"),
        (
            Partition { netns: Some("chaos-no-such-ns".into()), filter: Filter::default() }
                .apply(&journal, &caps),
            "invalid netns: expected an existing network namespace, found no /run/netns/chaos-no-such-ns",
        ),
        (bandwidth("", "1mbit").apply(&journal, &caps), "invalid device: expected a network device name"),
        (bandwidth("veth-a", "fast").apply(&journal, &caps), "invalid rate: expected a rate like 1mbit"),
        (
            bandwidth("nosuchdev0", "1mbit").apply(&journal, &caps),
            "invalid device: expected an existing network device, found no device \"nosuchdev0\" in netns",
        ),
    ];
    for (result, expected) in refusals {
        let err = result.unwrap_err();
        assert!(matches!(err, AgentError::Invalid { .. }), "{err}");
        assert!(err.to_string().starts_with(expected), "{err}\n  expected to start with: {expected}");
    }
    assert!(pair.chaos_tables(&pair.a).is_empty());
    assert_eq!(root_qdisc(&pair.a, "veth-a"), "noqueue 0:");
    assert_eq!(pair.records(), 0);
}
