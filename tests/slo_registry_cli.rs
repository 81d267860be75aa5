//! `chaos slo apply|list|history|rm` through the built binary against a real `chaos controller` (its own
//! process on 127.0.0.1:0, its own data directory): what each command prints and its exit code, a bad file
//! refused locally with FILE:LINE:COLUMN and exit 2 before anything is sent, and a missing token refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::{chaos_bin, describe_output, output_within, repo_path, temp_dir};

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

    /// `chaos slo ARGS... --controller URL --token-file DIR/api.token`.
    fn slo(&self, args: &[&str]) -> Output {
        let mut command = Command::new(chaos_bin());
        command
            .arg("slo")
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
        let out = self.slo(args);
        assert_eq!(out.status.code(), Some(0), "chaos slo {args:?}: {}", describe_output(&out));
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn slo_apply_list_history_and_rm_against_a_real_controller() {
    let dir = temp_dir("slo-registry-cli", "lifecycle");
    let controller = Controller::start(&dir);
    let v1 = std::fs::read_to_string(repo_path("experiments/slos/checkout.yaml")).unwrap();
    std::fs::write(dir.join("checkout.yaml"), &v1).unwrap();

    assert_eq!(
        controller.ok(&["apply", "checkout.yaml"]),
        "checkout/availability: created v1\ncheckout/latency: created v1\n"
    );
    assert_eq!(
        controller.ok(&["apply", "checkout.yaml"]),
        "checkout/availability: unchanged (v1)\ncheckout/latency: unchanged (v1)\n"
    );
    let v2 = v1.replacen("objective: 99.9%", "objective: 99.5%", 1);
    std::fs::write(dir.join("checkout.yaml"), &v2).unwrap();
    assert_eq!(
        controller.ok(&["apply", "checkout.yaml"]),
        "checkout/availability: updated v2\ncheckout/latency: unchanged (v1)\n"
    );

    let table = controller.ok(&["list"]);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["ID", "VERSION", "OBJECTIVE", "PERIOD", "SLI", "APPLIED", "(UTC)", "BY", "FILE"]);
    assert_eq!(rows.len(), 3, "{table}");
    // ID VERSION OBJECTIVE PERIOD SLI DATE TIME BY FILE
    assert_eq!(
        [rows[1][..5].to_vec(), rows[1][7..].to_vec()],
        [vec!["checkout/availability", "v2", "99.5%", "30d", "events"], vec!["api", "checkout.yaml"]]
    );
    assert_eq!(rows[2][..5], ["checkout/latency", "v1", "99%", "7d", "latency"]);

    let json: serde_json::Value = serde_json::from_str(&controller.ok(&["list", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["id"], "checkout/availability");
    assert_eq!(json[0]["version"], 2);
    assert_eq!(json[0]["objective"], 0.995);
    assert_eq!(json[0]["applied_by"], "api");
    assert_eq!(json[0]["definition"]["sli"]["events"]["counted"], "bad");
    assert_eq!(json[1]["definition"]["sli"]["latency"]["threshold"], 0.3);

    let history = controller.ok(&["history", "checkout/availability"]);
    let versions: Vec<Vec<&str>> = history.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(versions.len(), 2, "{history}");
    assert_eq!(versions[0][..5], ["v1", "applied", "99.9%", "30d", "events"]);
    assert_eq!(versions[1][..5], ["v2", "applied", "99.5%", "30d", "events"]);
    // Each version's file exactly as it was applied.
    assert_eq!(controller.ok(&["history", "checkout/availability", "--source", "1"]), v1);
    assert_eq!(controller.ok(&["history", "checkout/availability", "--source", "2"]), v2);

    assert_eq!(
        controller.ok(&["rm", "checkout/latency"]),
        "checkout/latency: deleted (v2; its history is kept: chaos slo history checkout/latency)\n"
    );
    let listed = controller.ok(&["list"]);
    assert!(!listed.contains("checkout/latency"), "{listed}");
    let history = controller.ok(&["history", "checkout/latency", "--json"]);
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history[1]["deleted"], true);
    assert_eq!(history[1]["definition"], serde_json::Value::Null);

    let again = controller.slo(&["rm", "checkout/latency"]);
    assert_eq!(again.status.code(), Some(1), "{}", describe_output(&again));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr, "chaos: deleting the SLO: SLO checkout/latency not found\n");
}

#[test]
fn a_bad_file_is_refused_locally_with_exit_2_and_a_missing_token_with_exit_1() {
    let dir = temp_dir("slo-registry-cli", "refused");
    let controller = Controller::start(&dir);
    std::fs::write(
        dir.join("checkout.yaml"),
        std::fs::read(repo_path("experiments/slos/checkout.yaml")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("bad.yaml"),
        "apiVersion: chaos/v1\nkind: SLO\nservice: x\nname: y\nobjective: 200%\nsli:\n  events:\n    bad: a\n    total: b\n",
    )
    .unwrap();
    let out = controller.slo(&["apply", "checkout.yaml", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "bad.yaml:5:12: percentage \"200%\" is outside 0%..100%\n"
    );
    assert_eq!(out.stdout, b"");
    // All or nothing: the good file was not applied either.
    assert_eq!(controller.ok(&["list"]).lines().count(), 1);

    let mut command = Command::new(chaos_bin());
    command
        .args(["slo", "apply", "checkout.yaml", "--controller", &controller.url])
        .env_remove("CHAOS_TOKEN")
        .env_remove("CHAOS_CONTROLLER")
        .env("CHAOS_CONTROLLER_DIR", dir.join("no-such-dir"))
        .current_dir(&dir);
    let out = output_within(&mut command, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("chaos: applying the SLOs: missing bearer token"), "{stderr}");
    assert_eq!(controller.ok(&["list"]).lines().count(), 1);
}
