//! `CHAOS_TEST_SKIP`: the one way a test may pass without running its real part. A test whose real part (a
//! program, a kernel feature) is missing fails, saying what is missing, unless this comma-separated variable
//! names that part: `CHAOS_TEST_SKIP=curl,cgroup cargo test`. CI sets none of it (.ci/run installs every part).
//! An unknown name in the variable fails every test that consults it, so a typo cannot skip silently.

/// The variable's name.
pub const SKIP_VAR: &str = "CHAOS_TEST_SKIP";

/// The parts a test may be excused from, and what each stands for.
pub const PARTS: &[(&str, &str)] = &[
    ("curl", "the curl program (proxy/tests/intercept.rs: curl through an intercepted port)"),
    (
        "cgroup",
        "a cgroup v2 directory this test may create (proxy/tests/intercept.rs: cgroup-scoped interception)",
    ),
    ("prometheus", "the prometheus server and promtool programs (tests/run_prometheus.rs, the SLO tests)"),
    (
        "alertmanager",
        "Debian's prometheus-alertmanager (controller/tests/detection.rs: detection through Alertmanager)",
    ),
    ("python3", "python3 with the venv module (tests/compat_python.rs: toxiproxy-python)"),
    (
        "containerd",
        "Debian's containerd, runc, containernetworking-plugins and busybox-static (tests/pods_cri.rs: pods \
         through the CRI)",
    ),
    (
        "chromium",
        "Debian's chromium and chromium-driver, headless (tests/report_html.rs: the HTML report; \
         controller/tests/console_browser.rs: the web console)",
    ),
];

/// Whether the test may go on: `Ok(())` (the part is here) gives true; a missing part fails the test with
/// `why`, unless [`SKIP_VAR`] names `part`, in which case the skip is printed and false comes back.
#[track_caller]
pub fn require(part: &str, available: Result<(), String>) -> bool {
    match available {
        Ok(()) => true,
        Err(why) => {
            missing(part, &why);
            false
        }
    }
}

/// `part` is missing because of `why`: fails the test unless [`SKIP_VAR`] names `part` (then prints the skip).
#[track_caller]
pub fn missing(part: &str, why: &str) {
    let setting = std::env::var(SKIP_VAR).ok();
    if let Err(message) = decide(part, why, setting.as_deref()) {
        panic!("{message}");
    }
    eprintln!("skipped: {why} ({SKIP_VAR} names {part})");
}

/// The decision of [`missing`] for a given value of the variable: `Ok` to skip, `Err` with the failure.
pub fn decide(part: &str, why: &str, setting: Option<&str>) -> Result<(), String> {
    assert!(PARTS.iter().any(|(name, _)| *name == part), "{part:?} is not one of skip::PARTS");
    let listed = parse(setting.unwrap_or(""))?;
    if listed.contains(&part) {
        Ok(())
    } else {
        Err(format!("{why}: this test needs {part}; install it, or set {SKIP_VAR}={part} to skip this test"))
    }
}

/// The parts a value of [`SKIP_VAR`] names; an unknown name is an error naming the known ones.
pub fn parse(setting: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    for name in setting.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !PARTS.iter().any(|(known, _)| *known == name) {
            let known: Vec<&str> = PARTS.iter().map(|(n, _)| *n).collect();
            return Err(format!("{SKIP_VAR}: unknown part {name:?}, expected some of {}", known.join(", ")));
        }
        parts.push(name);
    }
    Ok(parts)
}

/// `Ok(())` when `program` is an executable file on `PATH`, else why not.
pub fn program(program: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    });
    if found { Ok(()) } else { Err(format!("{program} is not installed (not on PATH)")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_part_fails_unless_the_variable_names_it() {
        let failed = decide("curl", "curl is not installed", None).unwrap_err();
        assert_eq!(
            failed,
            "curl is not installed: this test needs curl; install it, or set CHAOS_TEST_SKIP=curl to skip this test"
        );
        assert!(decide("curl", "curl is not installed", Some("prometheus")).is_err());
        assert_eq!(decide("curl", "curl is not installed", Some("prometheus, curl")), Ok(()));
    }

    #[test]
    fn an_unknown_name_is_refused_naming_the_known_ones() {
        let err = decide("curl", "curl is not installed", Some("curl,prometeus")).unwrap_err();
        assert!(
            err.starts_with("CHAOS_TEST_SKIP: unknown part \"prometeus\", expected some of curl, cgroup"),
            "{err}"
        );
        assert_eq!(parse(" , ").unwrap(), Vec::<&str>::new());
    }

    #[test]
    fn programs_are_looked_up_on_path() {
        assert_eq!(program("sh"), Ok(()));
        assert!(program("chaos-no-such-program").unwrap_err().contains("not installed"));
    }
}
