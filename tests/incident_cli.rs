//! `chaos incident` through the built binary against a real `chaos controller` (its own process on
//! 127.0.0.1:0, its own data directory): each subcommand's output and exit code (0 done, 1 refused with the
//! reason or not found, 2 bad input), `show`'s timeline in order, `list` filters, `stats` numbers, the review
//! as Markdown and self-contained HTML, and the help text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::{chaos_bin, describe_output, output_within, temp_dir};

/// `chaos controller` on 127.0.0.1:0 with its data in `dir`, killed when dropped.
struct Controller {
    _server: support::LocalController,
    url: String,
    dir: PathBuf,
}

impl Controller {
    fn start(dir: &Path) -> Controller {
        let server = support::LocalController::start(dir, &[]);
        Controller { url: server.url.clone(), _server: server, dir: dir.to_path_buf() }
    }

    /// `chaos incident ARGS... --controller URL --token-file DIR/api.token`.
    fn incident(&self, args: &[&str]) -> Output {
        let mut command = Command::new(chaos_bin());
        command
            .arg("incident")
            .args(args)
            .args(["--controller", &self.url, "--token-file"])
            .arg(self.dir.join("data").join("api.token"))
            .env_remove("CHAOS_TOKEN")
            .env_remove("CHAOS_CONTROLLER")
            .current_dir(&self.dir);
        output_within(&mut command, Duration::from_secs(30))
    }

    /// The command's stdout, asserting exit 0.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.incident(args);
        assert_eq!(out.status.code(), Some(0), "chaos incident {args:?}: {}", describe_output(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The command's stderr, asserting exit `code` and nothing on stdout.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.incident(args);
        assert_eq!(out.status.code(), Some(code), "chaos incident {args:?}: {}", describe_output(&out));
        assert!(out.stdout.is_empty(), "{}", describe_output(&out));
        String::from_utf8(out.stderr).unwrap()
    }
}

#[test]
fn an_incident_from_open_to_review_through_the_cli() {
    let dir = temp_dir("incident-cli", "lifecycle");
    let controller = Controller::start(&dir);

    let opened = controller.ok(&[
        "open",
        "checkout errors",
        "--severity",
        "SEV2",
        "--service",
        "checkout",
        "--commander",
        "ana",
        "--started",
        "10m",
        "--detected",
        "8m",
        "--summary",
        "5xx on /checkout",
    ]);
    let id = opened.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(opened, format!("incident {id} opened (sev2, investigating): checkout errors\n"));

    assert_eq!(controller.ok(&["ack", &id]), format!("incident {id} acknowledged by api (investigating)\n"));
    let again = controller.fails(1, &["ack", &id]);
    assert!(
        again.starts_with(
            "chaos: acknowledging the incident: the incident was already acknowledged by api at "
        ),
        "{again}"
    );
    assert_eq!(controller.ok(&["status", &id, "identified"]), format!("incident {id}: identified\n"));
    let back = controller.fails(1, &["status", &id, "investigating"]);
    assert_eq!(
        back,
        "chaos: changing the incident's status: an incident may not go back from identified to investigating: only \
         monitoring may return to investigating or identified, when the fix does not hold\n"
    );
    let bogus = controller.fails(2, &["status", &id, "fixed"]);
    assert!(bogus.contains("unknown status \"fixed\""), "{bogus}");
    controller.ok(&["note", &id, "pool exhausted at 14:02"]);
    controller.ok(&["update", &id, "--action-item", "alert on pool saturation @bo", "--add-responder", "cy"]);
    controller.ok(&["update", &id, "--done", "1"]);
    let resolved = controller.ok(&["resolve", &id, "--root-cause", "a pool of 4 connections"]);
    assert!(resolved.starts_with(&format!("incident {id} resolved; time to recover 10 min ")), "{resolved}");

    // `show`: the fields, the times and the timeline in order.
    let shown = controller.ok(&["show", &id]);
    assert!(
        shown.starts_with(&format!("incident {id}: checkout errors\n  severity sev2, status resolved")),
        "{shown}"
    );
    assert!(shown.contains("time to detect 2 min 0 s (started → detected)"), "{shown}");
    assert!(shown.contains("  action item 1: [x] alert on pool saturation (owner bo)"), "{shown}");
    assert!(shown.contains("  root cause: a pool of 4 connections"), "{shown}");
    let timeline: Vec<&str> = shown
        .split("timeline:\n")
        .nth(1)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        timeline,
        [
            "opened",
            "note",
            "ack",
            "status",
            "note",
            "responder",
            "action_item",
            "action_item",
            "root_cause",
            "resolved"
        ]
    );
    let json: serde_json::Value = serde_json::from_str(&controller.ok(&["show", &id, "--json"])).unwrap();
    assert_eq!(json["root_cause"], "a pool of 4 connections");
    assert_eq!(json["detected_ms"].as_i64().unwrap() - json["started_ms"].as_i64().unwrap(), 120_000);

    // A second incident, still open, of another service and severity; `list` filters.
    let other = controller.ok(&["open", "slow search", "--severity", "sev4", "--service", "search"]);
    let other_id = other.split_whitespace().nth(1).unwrap().to_string();
    let listed = controller.ok(&["list"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.lines().next().unwrap().starts_with("ID "), "{listed}");
    let resolved_only = controller.ok(&["list", "--status", "resolved"]);
    assert!(resolved_only.contains(&id) && !resolved_only.contains(&other_id), "{resolved_only}");
    let search: serde_json::Value =
        serde_json::from_str(&controller.ok(&["list", "--service", "search", "--json"])).unwrap();
    assert_eq!(search.as_array().unwrap().len(), 1);
    assert_eq!(search[0]["id"], other_id.as_str());

    // Stats over 90 days: two incidents, one resolved; the time to detect of each is 2 min and 0 (a person
    // who opens it noticed it then).
    let stats: serde_json::Value =
        serde_json::from_str(&controller.ok(&["stats", "--since", "90d", "--json"])).unwrap();
    assert_eq!(stats["overall"]["incidents"], 2);
    assert_eq!(stats["overall"]["open"], 1);
    assert_eq!(stats["overall"]["time_to_detect"]["p90_ms"], 120_000);
    assert_eq!(stats["overall"]["time_to_recover"]["count"], 1);
    let services: Vec<&str> =
        stats["by_service"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(services, ["checkout", "search"]);
    let table = controller.ok(&["stats", "--severity", "sev2"]);
    assert!(table.contains("(last 90d)"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("all ") && l.contains("2 min 0 s")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("severity sev2 ")), "{table}");
    assert!(!table.contains("search"), "{table}");
    let bad = controller.fails(2, &["stats", "--since", "5y"]);
    assert!(bad.contains("unknown unit \"y\""), "{bad}");

    // The review, in Markdown and in HTML.
    let md = dir.join("review.md");
    controller.ok(&["report", &id, "-o", md.to_str().unwrap()]);
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.starts_with("# Incident review: checkout errors\n"), "{md}");
    assert!(md.contains("| Time to detect | started → detected | 2 min 0 s |"), "{md}");
    assert!(md.contains("- [x] alert on pool saturation (owner: bo)"), "{md}");
    assert_eq!(controller.ok(&["report", &id]), md, "stdout and the file hold the same review");
    let html = dir.join("review.html");
    controller.ok(&["report", &id, "--html", "-o", html.to_str().unwrap()]);
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("<h1>checkout errors</h1>"));

    // Errors: unknown incident (1), bad severity (2), no token (1).
    let missing = controller.fails(1, &["show", "inc-nope"]);
    assert_eq!(missing, "chaos: reading the incident: incident inc-nope not found\n");
    let bad = controller.fails(2, &["open", "x", "--severity", "sev9"]);
    assert!(bad.contains("unknown severity \"sev9\": expected sev1 (worst), sev2, sev3 or sev4"), "{bad}");
    let out = Command::new(chaos_bin())
        .args(["incident", "list", "--controller", &controller.url, "--token", "wrong-token-0123456789"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid API token"), "{}", describe_output(&out));
}

#[test]
fn the_help_names_every_subcommand_and_the_stats_definitions() {
    let out = Command::new(chaos_bin()).args(["incident", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for sub in ["open", "ack", "status", "note", "resolve", "update", "list", "show", "report", "stats"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(&format!("{sub} "))),
            "{sub} missing:\n{help}"
        );
    }
    let out = Command::new(chaos_bin()).args(["incident", "stats", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("nearest rank"), "{help}");
    assert!(help.contains("started → detected"), "{help}");
}
