//! Selection against real processes: each criterion, seeded choice, counts and policy refusals.

mod common;

use chaos_agent::process::{Policy, ProcessId, ProcessSelector, select};
use chaos_agent::{AgentError, Count};
use common::{TempDir, Victim, nonce};

fn by_cmdline(marker: &str) -> ProcessSelector {
    ProcessSelector { cmdline: Some(marker.to_string()), ..Default::default() }
}

fn one(selector: &ProcessSelector) -> Result<Vec<ProcessId>, AgentError> {
    select(selector, Count::Exactly(1), 0, &Policy::default())
}

#[test]
fn by_name_matches_exact_comm() {
    let name = format!("cn{}", nonce() % 10_000_000);
    let victim = Victim::named(&name);
    assert_eq!(
        one(&ProcessSelector { name: Some(name.clone()), ..Default::default() }).unwrap(),
        [victim.id()]
    );
    // A prefix is not the name.
    let prefix = ProcessSelector { name: Some(name[..name.len() - 1].to_string()), ..Default::default() };
    assert!(matches!(one(&prefix), Err(AgentError::NoMatch { .. })));
}

#[test]
fn by_cmdline_regex_over_space_joined_argv() {
    let victim = Victim::sleep();
    assert_eq!(one(&by_cmdline(&victim.marker)).unwrap(), [victim.id()]);
}

#[test]
fn by_pid_and_pidfile() {
    let victim = Victim::sleep();
    let by_pid = ProcessSelector { pid: Some(victim.pid()), ..Default::default() };
    assert_eq!(one(&by_pid).unwrap(), [victim.id()]);

    let dir = TempDir::new();
    let pidfile = dir.path.join("victim.pid");
    std::fs::write(&pidfile, format!("{}\n", victim.pid())).unwrap();
    let by_file = ProcessSelector { pidfile: Some(pidfile.clone()), ..Default::default() };
    assert_eq!(one(&by_file).unwrap(), [victim.id()]);

    // pid and pidfile must agree.
    let other = Victim::sleep();
    let disagree =
        ProcessSelector { pid: Some(other.pid()), pidfile: Some(pidfile.clone()), ..Default::default() };
    assert!(matches!(one(&disagree), Err(AgentError::NoMatch { .. })));

    std::fs::write(&pidfile, "not a pid").unwrap();
    let err = one(&by_file).unwrap_err().to_string();
    assert!(err.contains("victim.pid") && err.contains("does not hold a pid"), "{err}");
    assert!(!err.contains("not a pid'"), "the content is never quoted: {err}");
    let missing = ProcessSelector { pidfile: Some(dir.path.join("absent.pid")), ..Default::default() };
    assert!(one(&missing).unwrap_err().to_string().contains("absent.pid"));
}

#[test]
fn by_user_name_or_uid_combined_with_cmdline() {
    let victim = Victim::sleep();
    let uid = nix::unistd::geteuid().as_raw();
    let user_name = nix::unistd::User::from_uid(uid.into()).unwrap().unwrap().name;
    for user in [user_name, uid.to_string()] {
        let selector = ProcessSelector { user: Some(user), ..by_cmdline(&victim.marker) };
        assert_eq!(one(&selector).unwrap(), [victim.id()]);
    }
    let other_user = ProcessSelector { user: Some((uid + 12345).to_string()), ..by_cmdline(&victim.marker) };
    assert!(matches!(one(&other_user), Err(AgentError::NoMatch { .. })));
}

#[test]
fn every_criterion_must_match_and_no_match_names_the_selector() {
    let victim = Victim::sleep();
    let selector = ProcessSelector { name: Some("not-sleep".into()), ..by_cmdline(&victim.marker) };
    let err = one(&selector).unwrap_err().to_string();
    assert_eq!(err, format!("selector {{name=not-sleep, cmdline=/{}/}} matched no process", victim.marker));
}

#[test]
fn identity_is_pid_plus_start_time() {
    let victim = Victim::sleep();
    let real = victim.id();
    real.check().unwrap();
    let reused = ProcessId { start_time: real.start_time + 1, ..real };
    let err = reused.check().unwrap_err();
    assert!(matches!(err, AgentError::PidReused { found, .. } if found == real.start_time));
    assert!(err.to_string().contains("was reused"), "{err}");
}

#[test]
fn seeded_choice_is_reproducible_and_counts_round_up() {
    let group = nonce();
    let victims: Vec<Victim> = (0..6).map(|_| Victim::sleep_with_marker(group)).collect();
    let selector = by_cmdline(&victims[0].marker);
    let policy = Policy::default();

    let all = select(&selector, Count::Percent(1.0), 0, &policy).unwrap();
    let mut expected: Vec<ProcessId> = victims.iter().map(Victim::id).collect();
    expected.sort();
    assert_eq!(all, expected, "all matches, sorted by pid");

    let first = select(&selector, Count::Percent(0.5), 7, &policy).unwrap();
    assert_eq!(first, select(&selector, Count::Percent(0.5), 7, &policy).unwrap());
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|id| all.contains(id)));
    let distinct: std::collections::HashSet<Vec<ProcessId>> =
        (0..10).map(|seed| select(&selector, Count::Exactly(2), seed, &policy).unwrap()).collect();
    assert!(distinct.len() > 1, "different seeds choose differently");

    for (percent, want) in [(0.01, 1), (0.34, 3), (0.5, 3), (0.51, 4)] {
        assert_eq!(select(&selector, Count::Percent(percent), 1, &policy).unwrap().len(), want, "{percent}");
    }
    let err = select(&selector, Count::Exactly(7), 1, &policy).unwrap_err().to_string();
    assert!(err.contains("matched 6 processes, 7 wanted"), "{err}");
}

fn refusal(selector: &ProcessSelector, policy: &Policy) -> String {
    match select(selector, Count::Exactly(1), 0, policy) {
        Err(e @ AgentError::Refused { .. }) => e.to_string(),
        other => panic!("expected a policy refusal, got {other:?}"),
    }
}

#[test]
fn policy_refuses_pid_1_self_and_parent() {
    let policy = Policy::default();
    let pid = |pid: i32| ProcessSelector { pid: Some(pid), ..Default::default() };
    assert!(refusal(&pid(1), &policy).starts_with("policy rule 'pid-1' refused pid 1"));
    let me = std::process::id() as i32;
    let err = refusal(&pid(me), &policy);
    assert!(err.contains("'self-or-ancestor'") && err.contains("own process"), "{err}");
    let parent = nix::unistd::getppid().as_raw();
    if parent > 1 {
        let err = refusal(&pid(parent), &policy);
        assert!(err.contains("'self-or-ancestor'") && err.contains("ancestor of the agent"), "{err}");
    }
}

#[test]
fn policy_refuses_protected_names_before_choosing() {
    let name = format!("cp{}", nonce() % 10_000_000);
    let protected = Victim::named(&name);
    let plain = Victim::sleep();
    let policy = Policy::default().protect(name.clone());
    let err = refusal(&ProcessSelector { pid: Some(protected.pid()), ..Default::default() }, &policy);
    assert!(err.contains("'protected-name'") && err.contains(&name), "{err}");
    // A broad regex that reaches a protected process is refused whole, whatever the seed would have chosen.
    let broad = format!("{}|{}", plain.marker, protected.marker);
    let err = refusal(&by_cmdline(&broad), &policy);
    assert!(err.contains("'protected-name'"), "{err}");
    assert!(one(&by_cmdline(&plain.marker)).is_ok());
}

#[test]
fn policy_max_count_bounds_the_choice() {
    let group = nonce();
    let _victims: Vec<Victim> = (0..3).map(|_| Victim::sleep_with_marker(group)).collect();
    let selector = by_cmdline(&format!("^sleep 600 0\\.00{group}$"));
    let policy = Policy::default().with_max_count(2);
    assert_eq!(select(&selector, Count::Exactly(2), 0, &policy).unwrap().len(), 2);
    let err = select(&selector, Count::Percent(1.0), 0, &policy).unwrap_err().to_string();
    assert_eq!(err, "policy rule 'max-count' refused: 3 processes chosen, at most 2 allowed");
}

/// Runs `select` on a thread and fails the test if it does not answer within the deadline (a FIFO used to
/// block the read forever).
fn select_within(selector: ProcessSelector, policy: Policy) -> Result<Vec<ProcessId>, AgentError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(select(&selector, Count::Exactly(1), 0, &policy));
    });
    rx.recv_timeout(common::DEADLINE)
        .unwrap_or_else(|_| panic!("select did not answer within {:?}", common::DEADLINE))
}

#[test]
fn a_pidfile_must_be_a_small_regular_file_in_an_allowed_dir_and_is_never_quoted() {
    use std::os::unix::fs::PermissionsExt;
    let victim = Victim::sleep();
    let dir = TempDir::new();
    let by_file = |path: std::path::PathBuf| ProcessSelector { pidfile: Some(path), ..Default::default() };
    let only_dir = Policy { pidfile_dirs: vec![dir.path.clone()], ..Policy::default() };

    // A root-only file that is not a pid: refused without a byte of it in the message.
    let secret = dir.path.join("secret");
    std::fs::write(&secret, "hunter2-SECRET-TOKEN\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = select_within(by_file(secret.clone()), only_dir.clone()).unwrap_err().to_string();
    assert!(
        err.contains("does not hold a pid") && !err.contains("SECRET") && !err.contains("hunter2"),
        "{err}"
    );

    // A symlink inside the allowed directory to a file outside it is refused by the policy rule.
    let outside = TempDir::new();
    let target = outside.path.join("victim.pid");
    std::fs::write(&target, format!("{}\n", victim.pid())).unwrap();
    let link = dir.path.join("link.pid");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = select_within(by_file(link), only_dir.clone()).unwrap_err().to_string();
    assert!(err.starts_with("policy rule 'pidfile-dirs' refused: "), "{err}");

    // Outside the default directories (/dev here) nothing is read at all.
    let err = select_within(by_file("/dev/zero".into()), Policy::default()).unwrap_err().to_string();
    assert!(
        err.starts_with("policy rule 'pidfile-dirs' refused: /dev/zero is not under any allowed path"),
        "{err}"
    );
    // Even where the policy allows it, a device is not a pidfile: refused at once, not read until memory ends.
    let dev = Policy { pidfile_dirs: vec!["/dev".into()], ..Policy::default() };
    let err = select_within(by_file("/dev/zero".into()), dev).unwrap_err().to_string();
    assert_eq!(err, "pidfile /dev/zero: is not a regular file");

    // A FIFO with no writer is refused, not waited on.
    let fifo = dir.path.join("fifo.pid");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let err = select_within(by_file(fifo.clone()), only_dir.clone()).unwrap_err().to_string();
    assert_eq!(err, format!("pidfile {}: is not a regular file", fifo.display()));

    // At most 64 bytes: a pid followed by a megabyte of spaces is refused, the pid itself accepted.
    let big = dir.path.join("big.pid");
    std::fs::write(&big, format!("{}{}", victim.pid(), " ".repeat(1 << 20))).unwrap();
    let err = select_within(by_file(big.clone()), only_dir.clone()).unwrap_err().to_string();
    assert_eq!(err, format!("pidfile {}: is larger than the 64 bytes a pidfile may hold", big.display()));
    let exact = dir.path.join("exact.pid");
    let pid = victim.pid().to_string();
    std::fs::write(&exact, format!("{pid}{}", " ".repeat(64 - pid.len()))).unwrap();
    assert_eq!(select_within(by_file(exact), only_dir).unwrap(), [victim.id()]);
}
