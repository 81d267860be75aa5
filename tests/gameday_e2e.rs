//! End-to-end test of `chaos gameday`: the example plan experiments/gameday/plan.yaml run through a real
//! controller with agents in network namespaces (a controller host, a web host and a database host on one
//! bridge, as tests/controller_e2e.rs sets them up), with real faults: a worker paused, the database host
//! partitioned from the web host, the shop itself frozen. A note is added with `chaos gameday note` while the
//! game day runs; the review (Markdown and HTML) is checked for its sections, verdicts and the note. Needs
//! root (CI runs as root).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{
    DemoTarget, Lan, chaos_in, connects_from, describe_output, process_state, repo_path, temp_dir, wait_until,
};

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
        .args(["controller", "--listen", &format!("{addr}:{PORT}"), "--heartbeat", "500ms", "--lease", "2s"])
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("controller.log")).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("the controller printed nothing").unwrap();
    assert_eq!(line, format!("listening on {addr}:{PORT}"));
    std::thread::spawn(move || for _ in lines {});
    Proc(child)
}

/// `chaos agent serve` inside `ns` with id `id` and label `role=ROLE`.
fn start_agent(ns: &str, controller: Ipv4Addr, dir: &Path, id: &str, role: &str) -> Proc {
    let child = chaos_in(Some(ns))
        .args(["agent", "serve", "--controller", &format!("http://{controller}:{PORT}"), "--id", id])
        .args(["--label", &format!("role={role}")])
        .arg("--token-file")
        .arg(dir.join("agent.token"))
        .arg("--state-dir")
        .arg(dir.join(format!("state-{id}")))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("agent-{id}.log"))).unwrap())
        .spawn()
        .unwrap();
    Proc(child)
}

/// A client command run from the controller's host, with its URL and token.
fn client(ns: &str, controller: Ipv4Addr, dir: &Path) -> Command {
    let mut cmd = chaos_in(Some(ns));
    cmd.env("CHAOS_CONTROLLER", format!("http://{controller}:{PORT}"))
        .env("CHAOS_TOKEN", std::fs::read_to_string(dir.join("api.token")).unwrap().trim())
        .stdin(Stdio::null());
    cmd
}

fn json_of(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", describe_output(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe_output(&out)))
}

#[test]
fn the_example_game_day_runs_across_hosts_takes_a_note_and_writes_its_review() {
    let lan = Lan::new(&["ctl", "web", "db"]);
    let ((ctl, ctl_ip), (web, web_ip), (db, _)) = (lan.host(0), lan.host(1), lan.host(2));
    let dir = temp_dir("gameday", "e2e");
    let _controller = start_controller(ctl, ctl_ip, &dir);
    let _web_agent = start_agent(web, ctl_ip, &dir, "web-1", "web");
    let _db_agent = start_agent(db, ctl_ip, &dir, "db-1", "db");
    wait_until("agents connected", Duration::from_secs(15), || {
        let agents = json_of(client(ctl, ctl_ip, &dir).args(["agents", "--json"]));
        ["web-1", "db-1"]
            .iter()
            .all(|id| agents.as_array().unwrap().iter().any(|a| a["id"] == *id && a["health"] == "connected"))
    });
    let shop = DemoTarget::start_in(Some(web), &format!("{web_ip}:8080"));
    // A worker with a command line no other test uses.
    let worker_arg = format!("3000.{}77", std::process::id());
    let worker = Proc(Command::new("sleep").arg(&worker_arg).stdin(Stdio::null()).spawn().unwrap());
    let worker_cmdline = format!("^sleep {}$", worker_arg.replace('.', "\\."));

    let plan = repo_path("experiments/gameday/plan.yaml");
    let (review, html) = (dir.join("review.md"), dir.join("review.html"));
    let run = client(ctl, ctl_ip, &dir)
        .args(["gameday", "run"])
        .arg(&plan)
        .args(["--var", &format!("shop=http://{}", shop.addr)])
        .args(["--var", &format!("web_hosts={web_ip}/32")])
        .args(["--var", &format!("worker={worker_cmdline}")])
        // Anchored: this command line mentions the shop's too.
        .args([
            "--var",
            &format!(
                r"shop_process=^\S*chaos demo-target --http --listen {}:8080$",
                web_ip.to_string().replace('.', r"\.")
            ),
        ])
        .arg("--review")
        .arg(&review)
        .arg("--html")
        .arg(&html)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Scenario 1 holds the worker paused: the game day is running; the scribe takes a note.
    wait_until("the worker paused by the web agent", Duration::from_secs(30), || {
        process_state(worker.0.id()) == Some('T')
    });
    let note = "12:03 checkout dashboards stayed green while the worker was stalled";
    let out =
        client(ctl, ctl_ip, &dir).args(["gameday", "note", note, "--author", "Barbara"]).output().unwrap();
    assert!(out.status.success(), "{}", describe_output(&out));

    // Scenario 2 partitions the database host from the web host, through a table in its namespace.
    wait_until("the db host partitioned from the web host", Duration::from_secs(30), || {
        !lan.chaos_tables(2).is_empty() && !connects_from(db, shop.addr)
    });

    // Scenario 3 freezes the shop itself.
    wait_until("the shop frozen by the web agent", Duration::from_secs(30), || {
        process_state(shop.child.id()) == Some('T')
    });

    let out = support::wait_within(run, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    // The third scenario refutes its hypothesis and stops the game day (on_failure: stop): exit 1.
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    assert!(stdout.contains("scenario 1: \"a web worker stalls\""), "{stdout}");
    assert!(
        stdout.contains(&format!("note by Barbara: {note}")),
        "the note is streamed to the run: {stdout}"
    );
    assert!(stdout.contains("game day stopped: scenario \"the shop freezes\" ended failed"), "{stdout}");

    // Every fault was reverted.
    assert_eq!(process_state(worker.0.id()), Some('S'), "the worker resumed");
    assert_eq!(process_state(shop.child.id()), Some('S'), "the shop resumed");
    assert!(lan.chaos_tables(2).is_empty(), "the partition's table is gone");
    assert!(connects_from(db, shop.addr), "the db host reaches the shop again");

    // The review, in order: header, participants, summary, each scenario, notes, action items.
    let md = std::fs::read_to_string(&review).unwrap();
    let sections = [
        "# Game-day review: Shop resilience game day",
        "- **State:** stopped",
        "- **Scenarios:** 2 of 3 passed",
        "## Participants",
        "| Ada | facilitator |",
        "| Linus | on-call |",
        "## Summary",
        "| 1 | a web worker stalls | PASSED | ShopWorkerStalled: not measured |",
        "| 2 | the database hosts lose the web hosts | PASSED | not measured |",
        "| 3 | the shop freezes | FAILED | not measured |",
        "## Scenarios",
        "### 1. a web worker stalls: PASSED",
        "**SLO budget consumed**",
        "### 2. the database hosts lose the web hosts: PASSED",
        "### 3. the shop freezes: FAILED",
        "## Notes",
        &format!("| Barbara | {note} |"),
        "## Action items",
        "- [ ] Put the game day's review link in the on-call handbook",
        "- [ ] Detection of scenario \"a web worker stalls\" by ShopWorkerStalled was not measured",
        "- [ ] Scenario \"the shop freezes\" ended failed",
        "This review is blameless",
    ];
    let mut from = 0;
    for section in sections {
        let at =
            md[from..].find(section).unwrap_or_else(|| panic!("{section:?} missing (in order) from:\n{md}"));
        from += at + section.len();
    }
    // Recovery and budget figures come from the runs' journals: the failed scenario spent more than its budget.
    let freeze = &md[md.find("### 3. the shop freezes").unwrap()..];
    let budget_row =
        freeze.lines().find(|l| l.starts_with("| availability |") && l.ends_with("% |")).unwrap();
    let consumed: f64 = budget_row.rsplit('|').nth(1).unwrap().trim().trim_end_matches('%').parse().unwrap();
    assert!(consumed > 100.0, "the frozen shop spent more than its budget: {budget_row}");
    let recovery =
        &freeze[freeze.find("**Recovery**").unwrap()..freeze.find("**SLO budget consumed**").unwrap()];
    let recovered = recovery.lines().find(|l| l.starts_with("| availability |")).unwrap();
    assert!(
        !recovered.contains("not"),
        "the shop serves again after the pause, its recovery measured: {recovered}"
    );

    let page = std::fs::read_to_string(&html).unwrap();
    for id in
        ["id=\"participants\"", "id=\"summary\"", "id=\"scenarios\"", "id=\"notes\"", "id=\"action-items\""]
    {
        assert!(page.contains(id), "{id} missing from the HTML review");
    }
    assert!(page.contains(note), "the note is in the HTML review");
    for fetch in ["<script", "<link", "src=", "url("] {
        assert!(!page.contains(fetch), "the HTML review fetches or runs something ({fetch})");
    }

    // The same review again from the controller; the game day, its note and the audit trail are kept.
    let list = json_of(client(ctl, ctl_ip, &dir).args(["gameday", "list", "--json"]));
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["state"], "stopped");
    let again = client(ctl, ctl_ip, &dir).args(["gameday", "review", &id]).output().unwrap();
    assert!(again.status.success(), "{}", describe_output(&again));
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        md,
        "the review renders the same from the stored game day"
    );
    let show = client(ctl, ctl_ip, &dir).args(["gameday", "show", &id]).output().unwrap();
    let show = String::from_utf8_lossy(&show.stdout).to_string();
    assert!(show.contains("state: stopped") && show.contains(&format!("Barbara: {note}")), "{show}");
    let audit = client(ctl, ctl_ip, &dir).args(["runs", "audit", "--limit", "200"]).output().unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout).to_string();
    assert!(audit.contains("gameday_started") && audit.contains("gameday_note"), "{audit}");
    // No note goes to a game day that is not running without its id.
    let out = client(ctl, ctl_ip, &dir).args(["gameday", "note", "late"]).output().unwrap();
    assert!(!out.status.success(), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no game day is running"),
        "{}",
        describe_output(&out)
    );
}
