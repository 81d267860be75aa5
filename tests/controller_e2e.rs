//! Multi-host end-to-end tests of `chaos controller` and `chaos agent serve`: network namespaces the tests
//! create are the hosts (a controller host, a web host and a database host on one bridge), the real binary
//! runs in each, and the faults are real (a process killed, processes paused, nftables partitions).
//!
//! Proof of DESIGN §7 across hosts: a remote kill and a remote partition apply and revert; a scheduled
//! experiment fires; an agent cut off from the controller (nftables in its own namespace) reverts within its
//! lease; SIGKILL of the controller mid-run leaves no fault behind, and the restarted controller shows the run
//! as interrupted with its history kept. Needs root (CI runs as root).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    DemoTarget, Lan, chaos_in, connects_from, describe_output, process_state, repo_path, temp_dir, wait_until,
};

/// The controller's lease for remote faults in these tests: a cut-off agent reverts within this.
const LEASE: Duration = Duration::from_secs(2);
const PORT: u16 = 7400;

/// A process killed (SIGKILL) and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `chaos controller` inside `ns`, listening on `addr:7400`, state in `dir`; returns once it listens.
fn start_controller(ns: &str, addr: Ipv4Addr, dir: &Path) -> Proc {
    let mut child = chaos_in(Some(ns))
        .args(["controller", "--listen", &format!("{addr}:{PORT}"), "--heartbeat", "500ms"])
        .arg("--lease")
        .arg(format!("{}ms", LEASE.as_millis()))
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(format!("controller-{}.log", now_ms()))).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("the controller printed nothing").unwrap();
    assert_eq!(line, format!("listening on {addr}:{PORT}"));
    std::thread::spawn(move || for _ in lines {});
    Proc(child)
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
}

/// `chaos agent serve` inside `ns` with id `id` and label `role=ROLE`.
fn start_agent(ns: &str, controller: Ipv4Addr, dir: &Path, id: &str, role: &str) -> Proc {
    let state = dir.join(format!("state-{id}"));
    let child = chaos_in(Some(ns))
        .args(["agent", "serve", "--controller", &format!("http://{controller}:{PORT}"), "--id", id])
        .args(["--label", &format!("role={role}")])
        .arg("--token-file")
        .arg(dir.join("agent.token"))
        .arg("--state-dir")
        .arg(state)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("agent-{id}.log"))).unwrap())
        .spawn()
        .unwrap();
    Proc(child)
}

/// A client command (`chaos ARGS --controller URL --token-file DIR/api.token`) run from the controller's host.
fn client(ns: &str, controller: Ipv4Addr, dir: &Path) -> Command {
    let mut cmd = chaos_in(Some(ns));
    cmd.env("CHAOS_CONTROLLER", format!("http://{controller}:{PORT}"))
        .env("CHAOS_TOKEN", std::fs::read_to_string(dir.join("api.token")).unwrap().trim())
        .stdin(Stdio::null());
    cmd
}

/// `chaos run --controller … FILE --quiet`, spawned with its outputs captured.
fn spawn_run(ns: &str, controller: Ipv4Addr, dir: &Path, file: &Path) -> Child {
    let mut cmd = client(ns, controller, dir);
    cmd.arg("run").arg(file).arg("--quiet").stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

fn json_of(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", describe_output(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe_output(&out)))
}

/// Waits until `chaos agents` lists every id in `ids` as connected.
fn wait_for_agents(ns: &str, controller: Ipv4Addr, dir: &Path, ids: &[&str]) {
    wait_until("agents connected", Duration::from_secs(15), || {
        let agents = json_of(client(ns, controller, dir).args(["agents", "--json"]));
        ids.iter()
            .all(|id| agents.as_array().unwrap().iter().any(|a| a["id"] == *id && a["health"] == "connected"))
    });
}

/// A sleeping child with a command line no other test uses (`sleep 3000.PID0N`), for kill and pause targets.
fn sleeper(n: u32) -> (Proc, String) {
    let arg = format!("3000.{}{n:02}", std::process::id());
    let child = Command::new("sleep").arg(&arg).stdin(Stdio::null()).spawn().unwrap();
    (Proc(child), format!("^sleep {}$", arg.replace('.', "\\.")))
}

fn state_of(p: &Proc) -> Option<char> {
    process_state(p.0.id())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// An experiment pausing the processes matching `cmdline` on the web hosts for `duration`, while a load
/// runs against the shop at `shop` (an SLO needs a signal).
fn pause_experiment(title: &str, shop: SocketAddr, cmdline: &str, duration: &str) -> String {
    format!(
        r#"apiVersion: chaos/v1
title: {title}
targets:
  sleepers: {{ processes: {{ cmdline: '{cmdline}' }}, hosts: {{ role: web }} }}
load:
  - {{ name: shoppers, http: {{ url: "http://{shop}/checkout", method: POST }}, rate: 40/s, timeout: 2s }}
slos:
  - {{ name: availability, signal: errors, objective: 90%, source: {{ load: shoppers }} }}
baseline: 500ms
method:
  - {{ name: pause the sleepers, fault: pause, target: sleepers, duration: {duration} }}
recovery: 500ms
"#
    )
}

#[test]
fn a_game_day_across_hosts_kills_and_partitions_remotely_and_a_schedule_fires() {
    let lan = Lan::new(&["ctl", "web", "db"]);
    let ((ctl, ctl_ip), (web, web_ip), (db, _)) = (lan.host(0), lan.host(1), lan.host(2));
    let dir = temp_dir("fleet", "gameday");
    let _controller = start_controller(ctl, ctl_ip, &dir);
    let _web_agent = start_agent(web, ctl_ip, &dir, "web-1", "web");
    let _db_agent = start_agent(db, ctl_ip, &dir, "db-1", "db");
    wait_for_agents(ctl, ctl_ip, &dir, &["web-1", "db-1"]);
    let shop = DemoTarget::start_in(Some(web), &format!("{web_ip}:8080"));
    assert!(connects_from(db, shop.addr), "the db host reaches the shop before the game day");
    let (mut worker, worker_cmdline) = sleeper(1);

    // The dry run: the agents say what each fault would hit, and nothing changes.
    let gameday = repo_path("experiments/fleet-gameday.yaml");
    let vars = [
        format!("shop=http://{}", shop.addr),
        format!("worker={worker_cmdline}"),
        format!("web_hosts={web_ip}/32"),
        "duration=4s".to_string(),
    ];
    let mut dry = client(ctl, ctl_ip, &dir);
    dry.arg("run").arg(&gameday).arg("--dry-run");
    for v in &vars {
        dry.args(["--var", v]);
    }
    let out = dry.output().unwrap();
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(
        plan.contains(&format!("kill a web worker: on web-1: process-kill on pid {} (sleep)", worker.0.id())),
        "{plan}"
    );
    assert!(plan.contains(r#"on db-1: {"kind":"network-partition""#), "{plan}");
    assert_eq!(state_of(&worker), Some('S'));

    let mut run = client(ctl, ctl_ip, &dir);
    run.arg("run").arg(&gameday).args(["--seed", "7"]).arg("--journal").arg(dir.join("journal.json"));
    for v in &vars {
        run.args(["--var", v]);
    }
    let run = run.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // The remote kill: the worker dies (it is this test's child, so it becomes a zombie until reaped).
    wait_until("the worker killed by the web agent", Duration::from_secs(20), || {
        worker.0.try_wait().unwrap().is_some()
    });
    // The remote partition: the db host can no longer reach the web host, through a table in its namespace.
    wait_until("the db host partitioned from the web host", Duration::from_secs(20), || {
        !lan.chaos_tables(2).is_empty() && !connects_from(db, shop.addr)
    });
    let out = support::wait_within(run, Duration::from_secs(40));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    assert!(stdout.contains("PASSED"), "{stdout}");
    assert!(lan.chaos_tables(2).is_empty(), "the partition's table is gone");
    assert!(connects_from(db, shop.addr), "the db host reaches the shop again");
    let journal: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("journal.json")).unwrap()).unwrap();
    assert_eq!(journal["verdict"], "passed", "{journal:#}");
    // The db hosts' memory, judged from their agent's heartbeats.
    let headroom =
        journal["slos"].as_array().unwrap().iter().find(|s| s["name"] == "db memory headroom").unwrap();
    assert_eq!(headroom["passed"], true, "{headroom:#}");
    assert!(headroom["total"].as_u64().unwrap() >= 2, "{headroom:#}");

    // The audit log has the remote faults, by whom.
    let audit = client(ctl, ctl_ip, &dir).args(["runs", "audit", "--limit", "50"]).output().unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout).to_string();
    assert!(audit.contains("fault_applied") && audit.contains("agent=db-1"), "{audit}");
    assert!(audit.contains("fault_reverted"), "{audit}");

    // A schedule fires (every 2 s) a run pausing another sleeper on the web host; then it is removed.
    let (paused, paused_cmdline) = sleeper(2);
    let tick = write(&dir, "tick.yaml", &pause_experiment("tick", shop.addr, &paused_cmdline, "500ms"));
    let out = client(ctl, ctl_ip, &dir)
        .args(["schedule", "add", "tick"])
        .arg(&tick)
        .args(["--cron", "*/2 * * * * *", "--timezone", "Europe/Paris"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe_output(&out));
    wait_until("a scheduled run passed", Duration::from_secs(20), || {
        let runs = json_of(client(ctl, ctl_ip, &dir).args(["runs", "list", "--json"]));
        runs.as_array().unwrap().iter().any(|r| r["actor"] == "schedule:tick" && r["state"] == "passed")
    });
    let out = client(ctl, ctl_ip, &dir).args(["schedule", "rm", "tick"]).output().unwrap();
    assert!(out.status.success(), "{}", describe_output(&out));
    wait_until("the last scheduled run ended", Duration::from_secs(10), || {
        let runs = json_of(client(ctl, ctl_ip, &dir).args(["runs", "list", "--json", "--state", "running"]));
        runs.as_array().unwrap().is_empty()
    });
    assert_eq!(state_of(&paused), Some('S'), "the scheduled pause was reverted");
}

#[test]
fn an_agent_cut_off_from_the_controller_reverts_within_its_lease() {
    let lan = Lan::new(&["ctl", "web"]);
    let ((ctl, ctl_ip), (web, _)) = (lan.host(0), lan.host(1));
    let dir = temp_dir("fleet", "cutoff");
    let _controller = start_controller(ctl, ctl_ip, &dir);
    let _agent = start_agent(web, ctl_ip, &dir, "web-1", "web");
    wait_for_agents(ctl, ctl_ip, &dir, &["web-1"]);
    let shop = DemoTarget::start_in(Some(ctl), "127.0.0.1:0");
    let (paused, cmdline) = sleeper(3);
    let file = write(&dir, "pause.yaml", &pause_experiment("long pause", shop.addr, &cmdline, "60s"));
    let run = spawn_run(ctl, ctl_ip, &dir, &file);
    wait_until("the sleeper paused by the web agent", Duration::from_secs(20), || {
        state_of(&paused) == Some('T')
    });

    // Cut the web host off from the controller (both ways, only the controller's port), in its own namespace.
    let cut = Instant::now();
    let rules = format!(
        "add table inet cutoff\n\
         add chain inet cutoff out {{ type filter hook output priority 0; }}\n\
         add chain inet cutoff in {{ type filter hook input priority 0; }}\n\
         add rule inet cutoff out ip daddr {ctl_ip} tcp dport {PORT} drop\n\
         add rule inet cutoff in ip saddr {ctl_ip} tcp sport {PORT} drop\n"
    );
    let nft = write(&dir, "cutoff.nft", &rules);
    support::sh(&["ip", "netns", "exec", web, "nft", "-f", nft.to_str().unwrap()]);
    wait_until("the paused sleeper resumed by its own lease", LEASE + Duration::from_secs(5), || {
        state_of(&paused) == Some('S')
    });
    let reverted_after = cut.elapsed();
    assert!(reverted_after < LEASE + Duration::from_secs(5), "reverted after {reverted_after:?}");
    assert_eq!(state_of(&paused), Some('S'));

    // Reconnected, the agent holds nothing; halting the run ends it (inconclusive, exit 3) and nothing is left.
    support::sh(&["ip", "netns", "exec", web, "nft", "delete", "table", "inet", "cutoff"]);
    let runs = json_of(client(ctl, ctl_ip, &dir).args(["runs", "list", "--json", "--state", "running"]));
    let id = runs[0]["id"].as_str().unwrap().to_string();
    let out = client(ctl, ctl_ip, &dir).args(["runs", "halt", &id]).output().unwrap();
    assert!(out.status.success(), "{}", describe_output(&out));
    let out = support::wait_within(run, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(3), "{}", describe_output(&out));
    let show = client(ctl, ctl_ip, &dir).args(["runs", "show", &id]).output().unwrap();
    assert!(String::from_utf8_lossy(&show.stdout).contains("state: halted"), "{}", describe_output(&show));
    assert_eq!(state_of(&paused), Some('S'));
}

#[test]
fn sigkill_of_the_controller_mid_run_leaves_no_fault_and_the_restart_shows_the_run_interrupted() {
    let lan = Lan::new(&["ctl", "web", "db"]);
    let ((ctl, ctl_ip), (web, web_ip), (db, _)) = (lan.host(0), lan.host(1), lan.host(2));
    let dir = temp_dir("fleet", "sigkill");
    let mut controller = start_controller(ctl, ctl_ip, &dir);
    let _web_agent = start_agent(web, ctl_ip, &dir, "web-1", "web");
    let _db_agent = start_agent(db, ctl_ip, &dir, "db-1", "db");
    wait_for_agents(ctl, ctl_ip, &dir, &["web-1", "db-1"]);
    let shop = DemoTarget::start_in(Some(web), &format!("{web_ip}:8080"));
    let (paused, cmdline) = sleeper(4);

    // A run that finishes first, for the history.
    let short = write(&dir, "short.yaml", &pause_experiment("short", shop.addr, &cmdline, "500ms"));
    let out = client(ctl, ctl_ip, &dir).arg("run").arg(&short).arg("--quiet").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));

    // A long one holding, at once, a pause on the web host and a partition on the db host.
    let long = format!(
        r#"apiVersion: chaos/v1
title: long
targets:
  sleepers: {{ processes: {{ cmdline: '{cmdline}' }}, hosts: {{ role: web }} }}
  db-hosts: {{ hosts: {{ role: db }} }}
load:
  - {{ name: shoppers, http: {{ url: "http://{shop}/checkout", method: POST }}, rate: 40/s, timeout: 2s }}
slos:
  - {{ name: availability, signal: errors, objective: 90%, source: {{ load: shoppers }} }}
method:
  - parallel:
      - {{ name: pause, fault: pause, target: sleepers, duration: 60s }}
      - name: partition
        fault: network_partition
        target: db-hosts
        with: {{ filter: {{ hosts: ["{web_ip}/32"] }} }}
        duration: 60s
"#,
        shop = shop.addr
    );
    let file = write(&dir, "long.yaml", &long);
    let run = spawn_run(ctl, ctl_ip, &dir, &file);
    wait_until("the sleeper paused", Duration::from_secs(20), || state_of(&paused) == Some('T'));
    wait_until("the db host partitioned", Duration::from_secs(20), || !lan.chaos_tables(2).is_empty());

    controller.0.kill().unwrap();
    controller.0.wait().unwrap();
    let killed = Instant::now();
    wait_until("every fault reverted by the agents' leases", LEASE + Duration::from_secs(5), || {
        state_of(&paused) == Some('S') && lan.chaos_tables(2).is_empty()
    });
    assert!(killed.elapsed() < LEASE + Duration::from_secs(5));
    assert!(connects_from(db, shop.addr), "the db host reaches the web host again");
    let out = support::wait_within(run, Duration::from_secs(30));
    // Issue 11 item 5: a client that loses its controller cannot know the verdict: inconclusive, exit 3.
    assert_eq!(out.status.code(), Some(3), "the client saw its controller die: {}", describe_output(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("long: INCONCLUSIVE"), "{}", describe_output(&out));

    // The restarted controller: the run is interrupted, the earlier one is still there, the agents are back.
    let _restarted = start_controller(ctl, ctl_ip, &dir);
    let runs = json_of(client(ctl, ctl_ip, &dir).args(["runs", "list", "--json"]));
    let states: Vec<(String, String)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["title"].as_str().unwrap().to_string(), r["state"].as_str().unwrap().to_string()))
        .collect();
    assert!(states.contains(&("long".into(), "interrupted".into())), "{states:?}");
    assert!(states.contains(&("short".into(), "passed".into())), "{states:?}");
    wait_for_agents(ctl, ctl_ip, &dir, &["web-1", "db-1"]);
    let agents = json_of(client(ctl, ctl_ip, &dir).args(["agents", "--json"]));
    assert!(agents.as_array().unwrap().iter().all(|a| a["active_faults"] == 0), "{agents:#}");
}

#[test]
fn mutual_tls_with_chaos_certs_lets_enrolled_clients_in_and_keeps_others_out() {
    let dir = temp_dir("fleet", "mtls");
    let certs = dir.join("certs");
    let out = chaos_in(None).args(["certs", "--out"]).arg(&certs).output().unwrap();
    assert!(out.status.success(), "{}", describe_output(&out));
    let port = support::free_port();
    let mut controller = chaos_in(None)
        .args(["controller", "--listen", &format!("127.0.0.1:{port}"), "--heartbeat", "200ms"])
        .arg("--data-dir")
        .arg(&dir)
        .arg("--tls-cert")
        .arg(certs.join("controller.pem"))
        .arg("--tls-key")
        .arg(certs.join("controller.key"))
        .arg("--client-ca")
        .arg(certs.join("ca.pem"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(controller.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), format!("listening on 127.0.0.1:{port}"));
    let _controller = Proc(controller);
    let url = format!("https://127.0.0.1:{port}");
    let tls = |cmd: &mut Command, who: &str| {
        cmd.arg("--ca").arg(certs.join("ca.pem"));
        cmd.arg("--cert")
            .arg(certs.join(format!("{who}.pem")))
            .arg("--key")
            .arg(certs.join(format!("{who}.key")));
    };
    let mut agent = chaos_in(None);
    agent.args(["agent", "serve", "--controller", &url, "--id", "tls-1", "--label", "role=web"]);
    agent.arg("--token-file").arg(dir.join("agent.token")).arg("--state-dir").arg(dir.join("state"));
    tls(&mut agent, "agent");
    let _agent =
        Proc(agent.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let token = std::fs::read_to_string(dir.join("api.token")).unwrap().trim().to_string();
    let agents = |with_cert: bool| {
        let mut cmd = chaos_in(None);
        cmd.args(["agents", "--json", "--controller", &url, "--token", &token]);
        if with_cert {
            tls(&mut cmd, "client");
        } else {
            cmd.arg("--ca").arg(certs.join("ca.pem"));
        }
        cmd.output().unwrap()
    };
    wait_until("the agent connected over mutual TLS", Duration::from_secs(15), || {
        let out = agents(true);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"connected\"")
    });
    // No client certificate: refused, nothing listed.
    let out = agents(false);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    assert!(out.stdout.is_empty(), "{}", describe_output(&out));
    // Plain http to a TLS controller: refused too.
    let out = chaos_in(None)
        .args(["agents", "--controller", &format!("http://127.0.0.1:{port}"), "--token", &token])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    // A certificate from another CA: refused.
    let other = dir.join("other-certs");
    assert!(chaos_in(None).args(["certs", "--out"]).arg(&other).output().unwrap().status.success());
    let out = chaos_in(None)
        .args(["agents", "--controller", &url, "--token", &token])
        .arg("--ca")
        .arg(certs.join("ca.pem"))
        .arg("--cert")
        .arg(other.join("client.pem"))
        .arg("--key")
        .arg(other.join("client.key"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
}

#[test]
fn sigterm_of_the_controller_halts_its_runs_reverts_at_once_and_exits() {
    let lan = Lan::new(&["ctl", "web"]);
    let ((ctl, ctl_ip), (web, _)) = (lan.host(0), lan.host(1));
    let dir = temp_dir("fleet", "sigterm");
    let mut controller = start_controller(ctl, ctl_ip, &dir);
    let _agent = start_agent(web, ctl_ip, &dir, "web-1", "web");
    wait_for_agents(ctl, ctl_ip, &dir, &["web-1"]);
    let shop = DemoTarget::start_in(Some(ctl), "127.0.0.1:0");
    let (paused, cmdline) = sleeper(5);
    let file = write(&dir, "pause.yaml", &pause_experiment("held", shop.addr, &cmdline, "60s"));
    let run = spawn_run(ctl, ctl_ip, &dir, &file);
    wait_until("the sleeper paused", Duration::from_secs(20), || state_of(&paused) == Some('T'));
    let stopped = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(controller.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // Reverted by the halt, well before the 2 s lease would have done it.
    wait_until("the sleeper resumed", Duration::from_secs(10), || state_of(&paused) == Some('S'));
    let status = support::wait_within(
        std::mem::replace(&mut controller.0, Command::new("true").spawn().unwrap()),
        Duration::from_secs(20),
    );
    assert!(status.status.success(), "{}", describe_output(&status));
    assert!(stopped.elapsed() < Duration::from_secs(20));
    let out = support::wait_within(run, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(3), "{}", describe_output(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("INCONCLUSIVE"), "{}", describe_output(&out));
    // The next controller finds it halted, not interrupted: it ended properly.
    let _restarted = start_controller(ctl, ctl_ip, &dir);
    let runs = json_of(client(ctl, ctl_ip, &dir).args(["runs", "list", "--json"]));
    assert_eq!(runs[0]["state"], "halted", "{runs:#}");
}

/// A run holding, on the web host, a pause, a partition and a CPU stress worker for `duration`, with load on a
/// shop that stays reachable.
fn web_faults_experiment(shop: SocketAddr, cmdline: &str, duration: &str) -> String {
    format!(
        r#"apiVersion: chaos/v1
title: kill matrix
targets:
  sleepers: {{ processes: {{ cmdline: '{cmdline}' }}, hosts: {{ role: web }} }}
  web-hosts: {{ hosts: {{ role: web }} }}
load:
  - {{ name: shoppers, http: {{ url: "http://{shop}/checkout", method: POST }}, rate: 20/s, timeout: 2s }}
slos:
  - {{ name: availability, signal: errors, objective: 90%, source: {{ load: shoppers }} }}
baseline: 300ms
method:
  - parallel:
      - {{ name: pause, fault: pause, target: sleepers, duration: {duration} }}
      - {{ name: cut, fault: network_partition, target: web-hosts, with: {{ filter: {{ hosts: ["203.0.113.1"] }} }}, duration: {duration} }}
      - {{ name: burn, fault: cpu_stress, target: web-hosts, with: {{ workers: 1, load: 20 }}, duration: {duration} }}
recovery: 300ms
"#
    )
}

/// What a web host still holds: a stopped sleeper, a chaos table, a process of the agent (its workers and
/// watchdog mention its state directory), an undo record.
fn web_leftovers(lan: &Lan, paused: &Proc, state: &Path) -> Vec<String> {
    let mut left = Vec::new();
    if state_of(paused) == Some('T') {
        left.push("the sleeper is still stopped".to_string());
    }
    let tables = lan.chaos_tables(1);
    if !tables.is_empty() {
        left.push(format!("tables {tables:?}"));
    }
    let procs = support::processes_mentioning(&state.display().to_string());
    if !procs.is_empty() {
        left.push(format!("processes {procs:?}"));
    }
    let records = std::fs::read_dir(state.join("journal"))
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count())
        .unwrap_or(0);
    if records > 0 {
        left.push(format!("{records} undo records"));
    }
    left
}

#[test]
fn kill_matrix_sigkill_of_the_agent_daemon_at_random_moments_leaves_nothing_behind() {
    let lan = Lan::new(&["ctl", "web"]);
    let ((ctl, ctl_ip), (web, _)) = (lan.host(0), lan.host(1));
    let dir = temp_dir("fleet", "kill-agent");
    let _controller = start_controller(ctl, ctl_ip, &dir);
    let shop = DemoTarget::start_in(Some(ctl), "127.0.0.1:0");
    let mut rng = support::KillRng::new();
    let (mut worst, mut held) = (Duration::ZERO, 0usize);
    for round in 0..4u32 {
        let id = format!("web-{round}");
        let mut agent = start_agent(web, ctl_ip, &dir, &id, "web");
        wait_for_agents(ctl, ctl_ip, &dir, &[&id]);
        let (paused, cmdline) = sleeper(10 + round);
        let file = write(
            &dir,
            &format!("kill-agent-{round}.yaml"),
            &web_faults_experiment(shop.addr, &cmdline, "3s"),
        );
        let run = spawn_run(ctl, ctl_ip, &dir, &file);
        // Spread over connecting the run, baseline, applying, holding and reverting (about 4 s in all).
        let offset = Duration::from_millis(300 + rng.below(3500));
        std::thread::sleep(offset);
        let was_held = state_of(&paused) == Some('T');
        held += usize::from(was_held);
        agent.0.kill().unwrap();
        let killed = Instant::now();
        agent.0.wait().unwrap();
        let state = dir.join(format!("state-{id}"));
        let took = support::clean_within(killed, Duration::from_secs(3), "the agent daemon", || {
            web_leftovers(&lan, &paused, &state)
        });
        eprintln!("agent round {round}: SIGKILL at {offset:?}, clean {took:?} later");
        worst = worst.max(took);
        // The run learns its agent is gone and ends; faults it lost make it inconclusive, never passed.
        let out = support::wait_within(run, Duration::from_secs(40));
        if was_held {
            assert_eq!(out.status.code(), Some(3), "{}", describe_output(&out));
        }
    }
    eprintln!("kill matrix (agent daemon): worst kill → clean {worst:?}; {held} of 4 kills hit held faults");
    assert!(held >= 1, "no kill came while the faults were held");
}

#[test]
fn kill_matrix_sigkill_of_the_controller_at_random_moments_leaves_nothing_behind() {
    let lan = Lan::new(&["ctl", "web"]);
    let ((ctl, ctl_ip), (web, _)) = (lan.host(0), lan.host(1));
    let dir = temp_dir("fleet", "kill-controller");
    let shop = DemoTarget::start_in(Some(ctl), "127.0.0.1:0");
    let mut controller = start_controller(ctl, ctl_ip, &dir);
    let _agent = start_agent(web, ctl_ip, &dir, "web-1", "web");
    let state = dir.join("state-web-1");
    let mut rng = support::KillRng::new();
    let (mut worst, mut held) = (Duration::ZERO, 0);
    for round in 0..3u32 {
        wait_for_agents(ctl, ctl_ip, &dir, &["web-1"]);
        let (paused, cmdline) = sleeper(20 + round);
        let file = write(
            &dir,
            &format!("kill-ctl-{round}.yaml"),
            &web_faults_experiment(shop.addr, &cmdline, "30s"),
        );
        let run = spawn_run(ctl, ctl_ip, &dir, &file);
        let offset = Duration::from_millis(300 + rng.below(2500));
        std::thread::sleep(offset);
        if state_of(&paused) == Some('T') {
            held += 1;
        }
        controller.0.kill().unwrap();
        let killed = Instant::now();
        controller.0.wait().unwrap();
        // The agent keeps running: only its leases (LEASE, renewed by the dead controller) can end the faults.
        let took = support::clean_within(killed, LEASE + Duration::from_secs(3), "the controller", || {
            let mut left = web_leftovers(&lan, &paused, &state);
            // The agent itself and its watchdog are alive and fine.
            left.retain(|l| !l.starts_with("processes"));
            left
        });
        eprintln!("controller round {round}: SIGKILL at {offset:?}, clean {took:?} later (lease {LEASE:?})");
        worst = worst.max(took);
        let out = support::wait_within(run, Duration::from_secs(30));
        assert_ne!(
            out.status.code(),
            Some(0),
            "the client saw its controller die: {}",
            describe_output(&out)
        );
        controller = start_controller(ctl, ctl_ip, &dir);
    }
    eprintln!(
        "kill matrix (controller): worst kill → clean {worst:?} with a {LEASE:?} lease; {held} of 3 held"
    );
    assert!(held >= 1, "no kill came while the faults were held");
    // `chaos runs audit | head -1` on that long audit log: the reader goes away, the client ends quietly.
    wait_for_agents(ctl, ctl_ip, &dir, &["web-1"]);
    let mut audit = client(ctl, ctl_ip, &dir)
        .args(["runs", "audit"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(audit.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let out = support::wait_within(audit, Duration::from_secs(10));
    assert!(!first.is_empty());
    assert!(matches!(out.status.code(), Some(0 | 141)), "{}", describe_output(&out));
    assert!(out.stderr.is_empty(), "{}", describe_output(&out));
}
