//! `chaos slo init`: the starter file it writes reads back with `chaos slo check`, an existing file is
//! never overwritten, and a bad service name is refused (exit 2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::{chaos_bin, describe_output, temp_dir};

fn chaos(args: &[&str]) -> std::process::Output {
    Command::new(chaos_bin()).args(args).output().unwrap()
}

#[test]
fn init_writes_a_file_that_checks_and_never_overwrites_one() {
    let dir = temp_dir("slo-init", "writes");
    let file = dir.join("slos.yaml");
    let path = file.to_str().unwrap();
    let out = chaos(&["slo", "init", "--service", "checkout", "-o", path]);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checkout/availability, checkout/latency"));
    let written = std::fs::read_to_string(&file).unwrap();
    let check = chaos(&["slo", "check", path]);
    assert_eq!(check.status.code(), Some(0), "{}", describe_output(&check));
    let listed = String::from_utf8_lossy(&check.stdout);
    assert!(
        listed.contains("checkout/availability: 99.9% over 30d")
            && listed.contains("checkout/latency: 99% over 30d"),
        "{listed}"
    );

    let again = chaos(&["slo", "init", "--service", "other", "-o", path]);
    assert_eq!(again.status.code(), Some(2), "{}", describe_output(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists; not overwriting it"),
        "{}",
        describe_output(&again)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written, "the existing file is untouched");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn init_prints_to_stdout_and_refuses_bad_service_names() {
    let out = chaos(&["slo", "init", "--service", "api"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("service: \"api\""));
    let bad = chaos(&["slo", "init", "--service", "my service"]);
    assert_eq!(bad.status.code(), Some(2), "{}", describe_output(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--service: \"my service\" may only hold letters"));
}
