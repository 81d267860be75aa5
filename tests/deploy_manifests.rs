//! Checks the deployment without a cluster or an image build: the Kubernetes manifests under deploy/kubernetes
//! (and the TLS overlay deploy/kubernetes/tls, its JSON patches applied here) against the Kubernetes OpenAPI
//! schemas with `kubernetes-validate --strict` (offline: the package bundles the schemas), for the oldest and the
//! newest Kubernetes release the deployment supports; then what no schema can say, read from the manifests:
//! every `--flag` and `CHAOS_*` variable they give exists in `chaos controller --help` / `chaos agent serve
//! --help`, the agent's capabilities are exactly the documented list, its undo journal is on a hostPath at its
//! state directory, no ServiceAccount token and no RBAC, the security contexts, no `latest` image; the agent
//! policy in the ConfigMap loads and protects the node's services (`chaos agent inject --dry-run`); and the
//! structure of deploy/Containerfile (stages, pinned base images, every workspace member copied, ENTRYPOINT).
//!
//! Then, for real (as root, like the host-fault tests): the manifests' own command lines, users, fsGroup,
//! capabilities and no_new_privs (util-linux `setpriv`), volumes laid out as the kubelet lays them (Secret keys
//! behind `..data` symlinks with their `defaultMode`), run a controller and an agent that enrols, plain and with
//! the TLS overlay; and the agent's documented capabilities suffice to apply and revert a fault of each family in
//! a network namespace of the test's own, while removing any one of them makes its faults fail.
//!
//! The validator lives in a venv of its own under the target directory (`target/py-kubernetes-validate`), built
//! once with PyPI reachable and reused: it is made complete under a private name and renamed into place, so a
//! concurrent run never sees half of one. A missing python3 fails the schema tests; only
//! `CHAOS_TEST_SKIP=python3` skips them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chaos_test_support::net::NetnsPair;
use chaos_test_support::process::{children_named, process_state};
use chaos_test_support::venv::drain;
use chaos_test_support::{TempDir, Victim, sh, skip, venv, wait_until};
use serde_json::{Value, json};

/// The validator, and the versions of what it pulls in, pinned (read when these tests were written).
const VALIDATOR: &[&str] = &[
    "kubernetes-validate==1.37.0",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
    "attrs==26.1.0",
    "PyYAML==6.0.4",
    "packaging==26.4",
    "importlib_resources==7.1.0",
    "typing_extensions==4.16.0",
];
/// The Kubernetes releases validated against: the oldest the manifests support, and the newest bundled.
const KUBERNETES_VERSIONS: &[&str] = &["1.31.0", "1.37.0"];
/// The agent's capabilities and the faults that need each: what agent.yaml adds and documents, no more.
/// SYS_PTRACE and DAC_OVERRIDE are shown needed with the agent in a real container filling another user's
/// container (tests/pods_cri.rs); the others below.
const AGENT_CAPABILITIES: &[(&str, &str)] = &[
    ("KILL", "process-kill"),
    ("NET_ADMIN", "network-partition"),
    ("SYS_ADMIN", "network faults"),
    ("SYS_PTRACE", "disk-fill inside a pod"),
    ("DAC_OVERRIDE", "disk-fill inside a pod"),
];
/// Kinds that would give a pod Kubernetes API rights: none may be shipped.
const RBAC_KINDS: &[&str] = &["ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kube_dir() -> PathBuf {
    root().join("deploy").join("kubernetes")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every YAML document of `path` (a manifest may hold several, `---` between them).
fn documents(path: &Path) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&read(path))
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// `field` of `value` as a string, failing with what was expected where.
fn text<'a>(value: &'a Value, pointer: &str, what: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("{what}: no string at {pointer}"))
}

/// The files deploy/kubernetes/kustomization.yaml lists as `resources`.
fn resource_files() -> Vec<PathBuf> {
    let kustomization = documents(&kube_dir().join("kustomization.yaml")).remove(0);
    let resources = kustomization["resources"].as_array().expect("kustomization.yaml lists resources");
    resources.iter().map(|r| kube_dir().join(r.as_str().expect("a resource is a file name"))).collect()
}

/// Every object the base deployment (`kubectl apply -k deploy/kubernetes`) creates, with its file's name.
fn base_objects() -> Vec<(String, Value)> {
    let mut objects = Vec::new();
    for file in resource_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        objects.extend(documents(&file).into_iter().map(|doc| (name.clone(), doc)));
    }
    objects
}

fn object<'a>(objects: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .map(|(_, doc)| doc)
        .find(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the deployment"))
}

/// The objects of the TLS overlay (`kubectl apply -k deploy/kubernetes/tls`): the base with the overlay's
/// JSON patches applied to their targets, as kustomize does.
fn tls_objects() -> Vec<(String, Value)> {
    let dir = kube_dir().join("tls");
    let overlay = documents(&dir.join("kustomization.yaml")).remove(0);
    assert_eq!(overlay["resources"], json!([".."]), "the TLS overlay builds on the base deployment");
    let mut objects = base_objects();
    let patches = overlay["patches"].as_array().expect("the TLS overlay has patches");
    assert!(!patches.is_empty());
    for patch in patches {
        let file = text(patch, "/path", "a patch of the TLS overlay");
        let (kind, name) = (text(patch, "/target/kind", file), text(patch, "/target/name", file));
        let ops = documents(&dir.join(file)).remove(0);
        let (_, target) = objects
            .iter_mut()
            .find(|(_, doc)| doc["kind"] == kind && doc["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{file}: its target {kind} {name} is not in the base"));
        for op in ops.as_array().unwrap_or_else(|| panic!("{file}: a JSON patch is a list of operations")) {
            json_patch(target, op).unwrap_or_else(|e| panic!("tls/{file}: {e} in {op}"));
        }
    }
    objects
}

/// One RFC 6902 operation of the kinds the overlay uses (`test`, `add`, `replace`) applied to `doc`.
fn json_patch(doc: &mut Value, op: &Value) -> Result<(), String> {
    let path = op["path"].as_str().ok_or("no path")?;
    let value = op.get("value").cloned().ok_or("no value")?;
    let (parent, last) = path.rsplit_once('/').ok_or("a path starts with /")?;
    let last = last.replace("~1", "/").replace("~0", "~");
    match op["op"].as_str().ok_or("no op")? {
        "test" => match doc.pointer(path) {
            Some(found) if *found == value => Ok(()),
            found => Err(format!("test failed: found {found:?}")),
        },
        "replace" => {
            let slot = doc.pointer_mut(path).ok_or("replace: nothing at the path")?;
            *slot = value;
            Ok(())
        }
        "add" => match doc.pointer_mut(parent).ok_or("add: no parent at the path")? {
            Value::Array(items) if last == "-" => {
                items.push(value);
                Ok(())
            }
            Value::Array(items) => {
                let index: usize = last.parse().map_err(|_| "add: not an index")?;
                if index > items.len() {
                    return Err("add: index past the end".into());
                }
                items.insert(index, value);
                Ok(())
            }
            Value::Object(fields) => {
                fields.insert(last, value);
                Ok(())
            }
            _ => Err("add: the parent is neither a list nor a mapping".into()),
        },
        other => Err(format!("operation {other:?} is not one the overlay may use")),
    }
}

/// The pod templates of the workloads in `objects`, with the workload's kind and name.
fn pod_specs(objects: &[(String, Value)]) -> Vec<(String, &Value)> {
    objects
        .iter()
        .filter(|(_, doc)| {
            ["StatefulSet", "DaemonSet", "Deployment", "Job"].contains(&doc["kind"].as_str().unwrap_or(""))
        })
        .map(|(_, doc)| {
            (format!("{} {}", doc["kind"], doc["metadata"]["name"]), &doc["spec"]["template"]["spec"])
        })
        .collect()
}

/// The first container of `pod`, which must be its only one.
fn only_container(pod: &Value) -> &Value {
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one container per pod");
    &containers[0]
}

/// The container of `pod` named `name`.
fn container_named<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// Every container of `pod`.
fn containers(pod: &Value) -> &[Value] {
    pod["containers"].as_array().expect("containers")
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name).and_then(|e| e["value"].as_str())
}

fn args(container: &Value) -> Vec<&str> {
    container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("an argument is a string"))
        .collect()
}

/// The value of `--flag=VALUE` in `args`.
fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    args.iter().find_map(|a| a.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// The volume mounted at a directory holding `path` (or at `path` itself), and its mount.
fn volume_of<'a>(pod: &'a Value, container: &'a Value, path: &str) -> (&'a Value, &'a Value) {
    let mounts = container["volumeMounts"].as_array().expect("volumeMounts");
    let mount = mounts
        .iter()
        .filter(|m| {
            let at = m["mountPath"].as_str().unwrap();
            path == at || path.starts_with(&format!("{at}/"))
        })
        .max_by_key(|m| m["mountPath"].as_str().unwrap().len())
        .unwrap_or_else(|| panic!("nothing is mounted at {path}"));
    let volume = pod["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == mount["name"]))
        .unwrap_or(&Value::Null);
    (mount, volume)
}

// === the schema validation ===

/// A command's exit status and combined output.
struct Finished {
    success: bool,
    output: String,
}

/// Runs `cmd` to completion within `deadline`, killing it if it overruns; stdout and stderr together.
fn run(cmd: &mut Command, deadline: Duration) -> Finished {
    let done = venv::run_within(cmd, deadline);
    Finished { success: done.success(), output: done.stdout + &done.stderr }
}

/// The venv's Python (`target/py-kubernetes-validate`) with the pinned validator, built once under a lock.
fn validator_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir");
        let has_validator = |v: &venv::Venv| {
            v.python().is_file()
                && run(
                    Command::new(v.python()).args(["-m", "kubernetes_validate", "--version"]),
                    Duration::from_secs(60),
                )
                .output
                .contains("1.37.0")
        };
        venv::ensure(target, "py-kubernetes-validate", VALIDATOR, has_validator).python()
    })
}

/// `kubernetes-validate --strict` of `files` for `version`: success and the output.
fn validate(files: &[PathBuf], version: &str) -> Finished {
    run(
        Command::new(validator_python())
            .args(["-m", "kubernetes_validate", "--strict", "--kubernetes-version", version])
            .args(files),
        Duration::from_secs(120),
    )
}

/// Whether the validator may run here (python3 present, or the test is excused by CHAOS_TEST_SKIP=python3).
fn python_available() -> bool {
    skip::require("python3", skip::program("python3"))
}

#[test]
fn every_manifest_and_the_tls_overlay_validate_against_the_kubernetes_schemas() {
    if !python_available() {
        return;
    }
    let scratch = TempDir::new("deploy-manifests");
    // The base files as they are, and the TLS overlay's patched objects written out (JSON is YAML).
    let mut files = resource_files();
    let mut expected = base_objects().len();
    for (i, (from, doc)) in tls_objects().into_iter().enumerate() {
        if doc["kind"] == "StatefulSet" || doc["kind"] == "DaemonSet" {
            let file = scratch.path().join(format!("tls-{i}-{}.yaml", from.replace('/', "-")));
            std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
            files.push(file);
            expected += 1;
        }
    }
    assert_eq!(files.len(), resource_files().len() + 2, "the overlay patches the controller and the agents");
    for version in KUBERNETES_VERSIONS {
        let result = validate(&files, version);
        let short = version.rsplit_once('.').unwrap().0;
        let passed = result
            .output
            .lines()
            .filter(|l| l.starts_with("INFO ") && l.ends_with(&format!("against version {short}")))
            .filter(|l| l.contains(" passed for resource "))
            .count();
        assert!(result.success, "kubernetes-validate --strict for {version} failed:\n{}", result.output);
        assert!(
            !result.output.contains("WARN") && !result.output.contains("ERROR"),
            "kubernetes-validate for {version} warned (an unknown kind is not validated):\n{}",
            result.output
        );
        assert_eq!(passed, expected, "one `passed` per object for {version}:\n{}", result.output);
    }
}

#[test]
fn a_manifest_made_invalid_fails_validation() {
    if !python_available() {
        return;
    }
    let scratch = TempDir::new("deploy-invalid");
    let controller = read(&kube_dir().join("controller.yaml"));
    let agent = read(&kube_dir().join("agent.yaml"));
    // (file, original text, what is replaced, by what, what the error must name)
    let mutations = [
        (
            "controller.yaml",
            &controller,
            "replicas: 1 ",
            "replicas: one ",
            "spec.replicas: 'one' is not of type",
        ),
        (
            "controller.yaml",
            &controller,
            "imagePullPolicy: IfNotPresent",
            "imagePullPolicy: IfNotPresent\n          imagePullPolicyy: Always",
            "'imagePullPolicyy' was unexpected",
        ),
        ("agent.yaml", &agent, "hostPID: true", "hostPID: [true]", "hostPID: [True] is not of type"),
        (
            "agent.yaml",
            &agent,
            "drop: [\"ALL\"]\n              add:\n                - KILL # process-kill",
            "drop: [\"ALL\"]\n              addd:\n                - KILL # process-kill",
            "'addd' was unexpected",
        ),
        (
            "agent.yaml",
            &agent,
            "path: /var/lib/chaos/agent\n            type: DirectoryOrCreate",
            "path: /var/lib/chaos/agent\n            type: DirectoryOrCreate\n            mode: 0700",
            "'mode' was unexpected",
        ),
    ];
    for (i, (name, original, from, to, error)) in mutations.iter().enumerate() {
        assert_eq!(original.matches(from).count(), 1, "{name}: {from:?} occurs once, to be mutated");
        let file = scratch.path().join(format!("{i}-{name}"));
        std::fs::write(&file, original.replacen(from, to, 1)).unwrap();
        let result = validate(std::slice::from_ref(&file), KUBERNETES_VERSIONS[0]);
        assert!(!result.success, "{name} with {to:?} passed validation:\n{}", result.output);
        assert!(
            result.output.contains(error),
            "{name} with {to:?}: expected {error:?} in:\n{}",
            result.output
        );
    }
}

// === what no schema says ===

/// `chaos SUBCOMMAND... --help`.
fn help(subcommand: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(subcommand)
        .arg("--help")
        .env("COLUMNS", "200")
        .output()
        .unwrap_or_else(|e| panic!("cannot run chaos {subcommand:?} --help: {e}"));
    assert!(out.status.success(), "chaos {subcommand:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The `--long` flags a help text lists.
fn help_flags(help: &str) -> BTreeSet<String> {
    help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == '<' || c == '=')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(String::from)
        .collect()
}

#[test]
fn every_flag_and_variable_the_manifests_give_exists_in_the_binary() {
    let controller_help = help(&["controller"]);
    let agent_help = help(&["agent", "serve"]);
    let guard_help = help(&["agent", "guard"]);
    let mut checked = 0;
    for objects in [base_objects(), tls_objects()] {
        for (workload, container) in pod_specs(&objects)
            .into_iter()
            .flat_map(|(w, pod)| containers(pod).iter().map(move |c| (format!("{w} {}", c["name"]), c)))
        {
            let args = args(container);
            let (help, rest) = match args.as_slice() {
                ["controller", rest @ ..] => (&controller_help, rest),
                ["agent", "serve", rest @ ..] => (&agent_help, rest),
                ["agent", "guard", rest @ ..] => (&guard_help, rest),
                other => panic!("{workload}: runs chaos {other:?}, which these checks do not know"),
            };
            let flags = help_flags(help);
            for arg in rest {
                assert!(arg.starts_with("--"), "{workload}: {arg:?} is not a --flag=VALUE argument");
                let name = arg.split('=').next().unwrap();
                assert!(flags.contains(name), "{workload}: {name} is not a flag of the binary ({flags:?})");
                // `$(VAR)` is expanded by Kubernetes from the container's own environment only.
                let mut rest = *arg;
                while let Some(start) = rest.find("$(") {
                    let var =
                        &rest[start + 2..rest[start..].find(')').map(|e| start + e).expect("$( closed")];
                    let defined = container["env"].as_array().unwrap().iter().any(|e| e["name"] == var);
                    assert!(defined, "{workload}: {arg} refers to $({var}), not in the container's env");
                    rest = &rest[start + 2..];
                }
                checked += 1;
            }
            for env in container["env"].as_array().expect("env") {
                let name = env["name"].as_str().unwrap();
                if name.starts_with("CHAOS_") {
                    assert!(
                        help.contains(&format!("[env: {name}=")),
                        "{workload}: the binary reads no {name}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} flags and variables checked");
    // A flag that does not exist is caught (the check can fail).
    assert!(!help_flags(&controller_help).contains("--data-directory"));
    assert!(help_flags(&controller_help).contains("--api-token-file"));
}

#[test]
fn the_agent_has_exactly_the_documented_capabilities() {
    let objects = base_objects();
    let agent = object(&objects, "DaemonSet", "chaos-agent");
    let container = container_named(&agent["spec"]["template"]["spec"], "agent");
    let security = &container["securityContext"];
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    let added: Vec<&str> = security["capabilities"]["add"]
        .as_array()
        .expect("added capabilities")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let documented: Vec<&str> = AGENT_CAPABILITIES.iter().map(|(cap, _)| *cap).collect();
    assert_eq!(added, documented, "the agent's capabilities are the documented list, no more");
    // Each is explained in the file's header and commented where it is added, naming the fault that needs it.
    let text = read(&kube_dir().join("agent.yaml"));
    for (cap, fault) in AGENT_CAPABILITIES {
        let header = text
            .lines()
            .find(|l| l.starts_with(&format!("# - {cap}: ")))
            .unwrap_or_else(|| panic!("no `# - {cap}:` line in agent.yaml's header"));
        assert!(header.contains(fault), "agent.yaml's header line for {cap} does not name {fault}: {header}");
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(&format!("- {cap} # "))),
            "{cap} is added without a comment naming what needs it"
        );
    }
    assert_eq!(security["privileged"], false);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["runAsUser"], 0, "the agent runs as root (see agent.yaml for why)");
    assert_eq!(
        agent["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    // The guard undoes what the agent did: exactly the agent's security context, no more.
    let guard = container_named(&agent["spec"]["template"]["spec"], "guard");
    assert_eq!(guard["securityContext"], *security, "the guard's security context is the agent's");
}

#[test]
fn the_agent_journal_is_on_the_host_at_its_state_dir_and_it_sees_the_host() {
    let objects = base_objects();
    let agent = object(&objects, "DaemonSet", "chaos-agent");
    let pod = &agent["spec"]["template"]["spec"];
    let guard = container_named(pod, "guard");
    let container = container_named(pod, "agent");
    assert_eq!(pod["hostPID"], true, "the agent signals the node's processes");
    assert_eq!(pod["hostNetwork"], true, "network faults act on the node's network");
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet", "the controller's Service name must resolve");
    assert_eq!(pod["tolerations"], json!([{ "operator": "Exists" }]), "on every node");
    assert!(pod.get("priorityClassName").is_none(), "not system-node-critical: see agent.yaml");

    let args = args(container);
    let state_dir = env_value(container, "CHAOS_STATE_DIR").expect("CHAOS_STATE_DIR");
    assert_eq!(flag(&args, "--state-dir"), None, "one state directory, given once");
    let (mount, volume) = volume_of(pod, container, state_dir);
    assert_eq!(mount["mountPath"], state_dir, "the journal volume is mounted at the state directory itself");
    assert_ne!(mount["readOnly"], true);
    assert_eq!(volume["hostPath"]["path"], state_dir, "the node's directory of the same name");
    assert_eq!(volume["hostPath"]["type"], "DirectoryOrCreate");

    // The policy's fill paths are the node's own (the root filesystem is read-only).
    let policy_path = flag(&args, "--policy").expect("--policy");
    let (_, policy_volume) = volume_of(pod, container, policy_path);
    let config_map =
        object(&objects, "ConfigMap", text(policy_volume, "/configMap/name", "the policy volume"));
    let key = Path::new(policy_path).file_name().unwrap().to_str().unwrap();
    let policy: Value =
        serde_saphyr::from_str(text(config_map, &format!("/data/{key}"), "the policy")).unwrap();
    let fill_paths = policy["stress"]["fill_paths"].as_array().expect("the policy names its fill_paths");
    for path in fill_paths {
        let path = path.as_str().unwrap();
        let (mount, volume) = volume_of(pod, container, path);
        assert_eq!(mount["mountPath"], path);
        assert_eq!(volume["hostPath"]["path"], path, "fill path {path} is the node's");
    }

    // The token: only the agent's key, read-only; the CRI socket read-only, for the coming pod targets.
    let token_file = flag(&args, "--token-file").expect("--token-file");
    let (mount, volume) = volume_of(pod, container, token_file);
    assert_eq!(mount["readOnly"], true);
    assert_eq!(volume["secret"]["items"], json!([{ "key": "agent.token", "path": "agent.token" }]));
    assert!(token_file.ends_with("/agent.token"));
    let (mount, volume) = volume_of(pod, container, chaos_proto::cri::DEFAULT_SOCKET);
    assert_eq!(mount["readOnly"], true);
    assert_eq!(volume["hostPath"]["type"], "Socket");
    // Pods' network namespaces appear after the agent starts: propagated from the host.
    let (mount, volume) = volume_of(pod, container, "/run/netns");
    assert_eq!(
        (mount["mountPropagation"].as_str(), volume["hostPath"]["path"].as_str()),
        (Some("HostToContainer"), Some("/run/netns"))
    );
    // Stress workers join a container's cgroup: the node's cgroup tree, writable.
    let (mount, volume) = volume_of(pod, container, "/sys/fs/cgroup");
    assert_ne!(
        mount["readOnly"], true,
        "stress workers cannot join a pod's cgroup through a read-only mount"
    );
    assert_eq!(volume["hostPath"]["path"], "/sys/fs/cgroup");
    let url = env_value(container, "CHAOS_CONTROLLER").expect("CHAOS_CONTROLLER");
    assert_eq!(url, "http://chaos-controller.chaos.svc.cluster.local:7400", "the controller's Service");

    // The guard reads the same journal, and reaches what a revert touches: the node's fill paths (fill files
    // there) and the pods' network namespaces (their nftables tables). It needs no token, socket or cgroup.
    assert_eq!(self::args(guard), ["agent", "guard"]);
    assert_eq!(env_value(guard, "CHAOS_STATE_DIR"), Some(state_dir));
    // Pod volumes at the kubelet's path, appearing after the agent starts: propagated from the host.
    let (mount, volume) = volume_of(pod, container, "/var/lib/kubelet/pods");
    assert_eq!(
        (mount["mountPropagation"].as_str(), volume["hostPath"]["path"].as_str()),
        (Some("HostToContainer"), Some("/var/lib/kubelet/pods"))
    );
    let kubelet = ["/var/lib/kubelet/pods", state_dir, "/run/netns"];
    for path in kubelet.into_iter().chain(fill_paths.iter().map(|p| p.as_str().unwrap())) {
        let (mine, _) = volume_of(pod, container, path);
        let (theirs, _) = volume_of(pod, guard, path);
        assert_eq!(mine, theirs, "the guard mounts {path} as the agent does");
    }
    for path in [token_file, chaos_proto::cri::DEFAULT_SOCKET] {
        let mounted = guard["volumeMounts"].as_array().unwrap().iter().any(|m| {
            let at = m["mountPath"].as_str().unwrap();
            path == at || path.starts_with(&format!("{at}/"))
        });
        assert!(!mounted, "the guard needs no {path}");
    }
}

#[test]
fn the_controller_runs_unprivileged_with_its_store_on_a_claim() {
    let objects = base_objects();
    let set = object(&objects, "StatefulSet", "chaos-controller");
    assert_eq!(set["spec"]["replicas"], 1, "one writer of controller.db");
    let pod = &set["spec"]["template"]["spec"];
    let container = only_container(pod);
    let (pod_security, security) = (&pod["securityContext"], &container["securityContext"]);
    assert_eq!(pod_security["runAsNonRoot"], true);
    assert!(pod_security["runAsUser"].as_u64().is_some_and(|uid| uid != 0));
    assert_eq!(pod_security["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"], json!({ "drop": ["ALL"] }));
    assert!(pod.get("hostPID").is_none() && pod.get("hostNetwork").is_none());
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(container["resources"][kind][resource].is_string(), "controller {kind}.{resource}");
        }
    }

    // The data directory is the claim's mount.
    let data_dir = env_value(container, "CHAOS_CONTROLLER_DIR").expect("CHAOS_CONTROLLER_DIR");
    let (mount, volume) = volume_of(pod, container, data_dir);
    assert_eq!(mount["mountPath"], data_dir);
    assert!(volume.is_null(), "the data volume is no pod volume but a claim");
    let claims = set["spec"]["volumeClaimTemplates"].as_array().expect("volumeClaimTemplates");
    assert!(claims.iter().any(|c| c["metadata"]["name"] == mount["name"]), "the data claim");

    // Token files from the Secret, read-only; the listen port is the probed and served one.
    let args = args(container);
    for (flag_name, key) in [("--api-token-file", "api.token"), ("--agent-token-file", "agent.token")] {
        let file = flag(&args, flag_name).unwrap_or_else(|| panic!("{flag_name}"));
        let (mount, volume) = volume_of(pod, container, file);
        assert_eq!(mount["readOnly"], true, "{flag_name}");
        assert_eq!(volume["secret"]["secretName"], "chaos-tokens");
        let items = volume["secret"]["items"].as_array().unwrap();
        assert!(
            items
                .iter()
                .any(|i| i["key"] == key && file.ends_with(&format!("/{}", i["path"].as_str().unwrap())))
        );
    }
    let listen = flag(&args, "--listen").expect("--listen");
    assert!(listen.starts_with("0.0.0.0:"), "reachable from the agents' pods");
    let port: u64 = listen.rsplit_once(':').unwrap().1.parse().unwrap();
    let ports = container["ports"].as_array().unwrap();
    let served =
        ports.iter().find(|p| p["containerPort"] == port).expect("the listen port is a container port");
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["tcpSocket"]["port"], served["name"], "{probe} checks the gRPC port");
    }
    let service = object(&objects, "Service", "chaos-controller");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], served["name"]);
    let selector = json!({ "app.kubernetes.io/name": "chaos-controller" });
    assert_eq!(service["spec"]["selector"], selector, "the Service selects the controller's pod");
    assert_eq!(set["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(set["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"], "chaos-controller");
}

#[test]
fn no_service_account_token_no_rbac_no_latest_image_one_namespace() {
    let objects = base_objects();
    let tls = tls_objects();
    for (file, doc) in &objects {
        let kind = doc["kind"].as_str().unwrap();
        assert!(
            !RBAC_KINDS.contains(&kind),
            "{file}: ships a {kind}: neither component needs Kubernetes API rights"
        );
        if kind != "Namespace" {
            assert_eq!(doc["metadata"]["namespace"], "chaos", "{file}: {kind} outside the chaos namespace");
        }
    }
    let pods = pod_specs(&objects);
    assert_eq!(pods.len(), 2, "the controller and the agents");
    for (workload, pod) in pods.iter().chain(pod_specs(&tls).iter()) {
        assert_eq!(
            pod["automountServiceAccountToken"], false,
            "{workload}: a ServiceAccount token is mounted"
        );
        for container in containers(pod) {
            let image = container["image"].as_str().unwrap();
            let tag = image.rsplit_once(':').map(|(_, tag)| tag).filter(|tag| !tag.contains('/'));
            assert!(tag.is_some_and(|t| t != "latest"), "{workload}: image {image} has no pinned tag");
        }
    }
    let kustomization = documents(&kube_dir().join("kustomization.yaml")).remove(0);
    assert_eq!(kustomization["namespace"], "chaos");
    for image in kustomization["images"].as_array().expect("images") {
        assert!(image["newTag"].as_str().is_some_and(|t| !t.is_empty() && t != "latest"), "{image}");
    }
    // Every manifest in the directory is listed, so `kubectl apply -k` applies them all.
    let listed: BTreeSet<PathBuf> = resource_files().into_iter().collect();
    let present: BTreeSet<PathBuf> = std::fs::read_dir(kube_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml"))
        .collect();
    assert_eq!(listed, present, "kustomization.yaml's resources are the directory's manifests");
}

#[test]
fn the_agent_policy_loads_and_protects_the_nodes_services() {
    let objects = base_objects();
    let policy = text(object(&objects, "ConfigMap", "chaos-agent-policy"), "/data/policy.yaml", "the policy");
    let dir = TempDir::new("deploy-policy");
    let policy_file = dir.path().join("policy.yaml");
    std::fs::write(&policy_file, policy).unwrap();
    let containerd = Victim::named("containerd");
    let inject = |spec: &str, with_policy: bool| {
        let spec_file = dir.path().join("spec.yaml");
        std::fs::write(&spec_file, spec).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaos"));
        cmd.args(["agent", "inject", "--dry-run", "--state-dir"])
            .arg(dir.path().join("state"))
            .arg(&spec_file);
        if with_policy {
            cmd.arg("--policy").arg(&policy_file);
        }
        run(&mut cmd, Duration::from_secs(60))
    };
    let kill = format!("{{ kind: process-kill, target: {{ pid: {} }} }}", containerd.pid());
    let refused = inject(&kill, true);
    assert!(!refused.success, "the policy let a process named containerd be killed:\n{}", refused.output);
    assert!(refused.output.contains("policy rule 'protected-name'"), "{}", refused.output);
    let allowed = inject(&kill, false);
    assert!(allowed.success, "without the policy the same dry run is allowed:\n{}", allowed.output);
    let fill_tmp = inject("{ kind: disk-fill, path: /tmp, size: 1MiB }", true);
    assert!(!fill_tmp.success, "the container's /tmp is no fill path:\n{}", fill_tmp.output);
    let fill_var_tmp = inject("{ kind: disk-fill, path: /var/tmp, size: 1MiB }", true);
    assert!(fill_var_tmp.success, "{}", fill_var_tmp.output);
    let stress = inject("{ kind: cpu-stress, workers: 1, load: 10 }", true);
    assert!(stress.success, "{}", stress.output);
}

// === the image build file ===

/// The Containerfile's instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                if !current.trim().is_empty() {
                    out.push(current.trim().to_string());
                }
                current.clear();
            }
        }
    }
    out
}

#[test]
fn the_containerfile_builds_in_one_stage_and_runs_from_a_slim_one() {
    let text = read(&root().join("deploy").join("Containerfile"));
    let lines = instructions(&text);
    let args: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ARG "))
        .filter_map(|a| a.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let resolve = |image: &str| {
        let name = image.trim_start_matches("${").trim_end_matches('}');
        args.iter().find(|(k, _)| k == name).map_or(image.to_string(), |(_, v)| v.clone())
    };
    // Stages: `FROM IMAGE AS NAME`, each base image tagged and never `latest`.
    let stages: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("FROM "))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            assert!(
                words.len() == 3 && words[1].eq_ignore_ascii_case("AS"),
                "FROM without a stage name: {l}"
            );
            (resolve(words[0]), words[2].to_string())
        })
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage: {stages:?}");
    for (image, _) in &stages {
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_else(|| panic!("{image} has no tag"));
        assert!(tag != "latest" && !tag.is_empty(), "{image}");
    }
    let (builder, build_stage) = &stages[0];
    let (runtime, _) = &stages[1];
    assert!(builder.contains("/rust:1.9") && builder.ends_with("-bookworm"), "builder {builder}");
    assert!(runtime.ends_with("/debian:bookworm-slim"), "runtime {runtime}");

    let start = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let (build, final_stage) = lines.split_at(start);
    // The build: every workspace member and the lock file copied, a locked release build of the binary.
    let copied: Vec<&str> = build.iter().filter_map(|l| l.strip_prefix("COPY ")).collect();
    let mut needed = workspace_members(&read(&root().join("Cargo.toml")));
    needed.retain(|m| m != ".");
    // The root package's sources, and experiments/ (src/demo.rs embeds one).
    needed.extend(["src".to_string(), "experiments".to_string()]);
    for dir in &needed {
        assert!(copied.iter().any(|c| c.split_whitespace().next() == Some(dir.as_str())), "{dir} not copied");
    }
    assert!(copied.iter().any(|c| c.contains("Cargo.lock")));
    assert!(!copied.iter().any(|c| c.starts_with(". ") || c.contains("target")), "never the whole context");
    assert!(
        build.iter().any(|l| l.starts_with("RUN ") && l.contains("cargo build --release --locked -p chaos"))
    );
    // The runtime: the tools the faults run, the binary from the build stage, a non-root user, chaos itself.
    let apt = final_stage.iter().find(|l| l.contains("apt-get install")).expect("apt-get install");
    for package in ["nftables", "iproute2", "ca-certificates"] {
        assert!(apt.split_whitespace().any(|w| w == package), "{package} not installed");
    }
    assert!(final_stage.iter().any(|l| l.starts_with(&format!("COPY --from={build_stage} "))));
    let user = final_stage.iter().rev().find_map(|l| l.strip_prefix("USER ")).expect("USER");
    assert!(!user.starts_with('0') && !user.starts_with("root"), "USER {user}");
    assert_eq!(
        final_stage.iter().filter(|l| l.starts_with("ENTRYPOINT ")).collect::<Vec<_>>(),
        ["ENTRYPOINT [\"chaos\"]"]
    );
}

/// The `[workspace] members` of a Cargo.toml, read without a TOML parser (its one `members = [...]` line).
fn workspace_members(text: &str) -> Vec<String> {
    let line = text.lines().find(|l| l.trim_start().starts_with("members = [")).expect("workspace members");
    let list = line.split_once('[').unwrap().1.split_once(']').expect("members on one line").0;
    list.split(',').map(|m| m.trim().trim_matches('"').to_string()).filter(|m| !m.is_empty()).collect()
}

// === the capabilities, for real ===

/// A `sleep 600` of user nobody (65534): signalling it needs CAP_KILL, as a pod's process does for the agent.
struct NobodySleeps(std::process::Child);

impl NobodySleeps {
    fn start() -> NobodySleeps {
        let child = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `setpriv … sleep 600` (util-linux's setpriv): {e}"));
        let pid = child.id();
        wait_until("the victim runs as nobody", Duration::from_secs(10), || {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t65534\t")))
                && process_state(pid).is_some_and(|s| s == 'S')
        });
        NobodySleeps(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for NobodySleeps {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `chaos ARGS` as root in network namespace `ns` with only `caps` (the bounding set, so also every program it
/// runs) and no_new_privs: what the DaemonSet's securityContext gives the agent container.
fn chaos_with_caps(ns: &str, caps: &[&str], args: &[&str]) -> Command {
    let mut set = String::from("-all");
    for cap in caps {
        set.push_str(&format!(",+{}", cap.to_ascii_lowercase()));
    }
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        ns,
        "setpriv",
        "--bounding-set",
        &set,
        "--inh-caps=-all",
        "--no-new-privs",
        "--",
    ])
    .arg(env!("CARGO_BIN_EXE_chaos"))
    .args(args)
    .env("RUST_LOG", "warn");
    cmd
}

fn documented_caps() -> Vec<&'static str> {
    AGENT_CAPABILITIES.iter().map(|(cap, _)| *cap).collect()
}

/// `chaos agent capabilities --json` with `caps`: which network features the agent finds.
fn network_support(ns: &str, caps: &[&str]) -> Value {
    let out =
        run(&mut chaos_with_caps(ns, caps, &["agent", "capabilities", "--json"]), Duration::from_secs(60));
    assert!(out.success, "chaos agent capabilities failed with {caps:?}:\n{}", out.output);
    let json = &out.output[out.output.find('{').expect("JSON")..];
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {}", out.output))
}

#[test]
fn the_documented_capabilities_suffice_for_every_fault_and_each_is_needed() {
    let net = NetnsPair::tagged("k8scaps");
    let dir = TempDir::new("deploy-caps");
    let fill = dir.path().join("fill");
    std::fs::create_dir(&fill).unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, format!("stress: {{ fill_paths: [{}] }}\n", fill.display())).unwrap();
    let victim = NobodySleeps::start();

    // With exactly the documented capabilities (and no_new_privs), every network feature is found ...
    let support = network_support(&net.a, &documented_caps());
    for feature in ["nft", "tc", "tbf"] {
        assert_eq!(support[feature], "ok", "{feature} with the documented capabilities: {support}");
    }
    // ... and a fault of each family applies and reverts: a pause of another user's process, a partition
    // (nftables), a bandwidth limit (tc tbf), CPU stress and a disk fill.
    let spec = dir.path().join("faults.yaml");
    std::fs::write(
        &spec,
        format!(
            "- {{ kind: process-pause, target: {{ pid: {} }} }}\n\
             - {{ kind: network-partition, filter: {{ hosts: [{}] }} }}\n\
             - {{ kind: network-bandwidth, device: veth-a, rate: 1mbit }}\n\
             - {{ kind: cpu-stress, workers: 1, load: 10 }}\n\
             - {{ kind: disk-fill, path: {}, size: 1MiB }}\n",
            victim.pid(),
            net.addr_b,
            fill.display()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let (spec_arg, state_arg, policy_arg) =
        (spec.to_str().unwrap(), state.to_str().unwrap(), policy.to_str().unwrap());
    let inject = ["agent", "inject", spec_arg, "--state-dir", state_arg, "--policy", policy_arg];
    // Killed (SIGKILL) if the test fails midway: its watchdog then reverts what it holds.
    let mut agent = Running(
        chaos_with_caps(&net.a, &documented_caps(), &inject)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chaos agent inject"),
    );
    let stderr = drain(agent.0.stderr.take().unwrap());
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = agent.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut injected = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while injected.len() < 5 {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.starts_with("injected ") => injected.push(line),
            Ok(_) => {}
            Err(_) => {
                drop(agent);
                panic!("the agent applied {injected:?}, not all five:\n{}", stderr.join().unwrap());
            }
        }
    }
    assert_eq!(process_state(victim.pid()), Some('T'), "nobody's process is paused");
    assert_eq!(net.chaos_tables(&net.a).len(), 1, "the partition's table: {:?}", net.chaos_tables(&net.a));
    let qdisc = || sh(&["ip", "netns", "exec", &net.a, "tc", "qdisc", "show", "dev", "veth-a"]);
    assert!(qdisc().contains("qdisc tbf cafe:"), "the bandwidth limit: {}", qdisc());
    assert_eq!(children_named(agent.0.id(), "chaos-cpu").len(), 1, "one CPU worker");
    let filled = || std::fs::read_dir(&fill).unwrap().count();
    assert_eq!(filled(), 1, "the fill file");

    let exited = agent.terminate(Duration::from_secs(60));
    let stderr = stderr.join().unwrap();
    assert!(exited.success(), "reverting with the documented capabilities failed: {exited}\n{stderr}");
    assert!(victim_running(victim.pid()), "nobody's process resumed");
    assert!(net.chaos_tables(&net.a).is_empty(), "the table is gone");
    assert!(!qdisc().contains("tbf"), "the qdisc is gone: {}", qdisc());
    assert_eq!(filled(), 0, "the fill file is gone");
    assert!(journal_is_empty(&state), "the undo journal is empty");

    // Each capability is needed: without SYS_ADMIN no network feature is found (the probe's namespace cannot
    // be made), without NET_ADMIN nftables and tc refuse, without KILL another user's process cannot be paused.
    let without = |cap: &str| documented_caps().into_iter().filter(|c| *c != cap).collect::<Vec<_>>();
    let support = network_support(&net.a, &without("SYS_ADMIN"));
    for feature in ["nft", "tc", "tbf", "netem"] {
        let why = support[feature]["missing"].as_str().unwrap_or_else(|| panic!("{feature}: {support}"));
        assert!(why.contains("CAP_SYS_ADMIN"), "{feature} without SYS_ADMIN: {why}");
    }
    let support = network_support(&net.a, &without("NET_ADMIN"));
    for feature in ["nft", "tbf"] {
        assert!(support[feature]["missing"].is_string(), "{feature} without NET_ADMIN: {support}");
    }
    let pause = dir.path().join("pause.yaml");
    std::fs::write(&pause, format!("{{ kind: process-pause, target: {{ pid: {} }} }}\n", victim.pid()))
        .unwrap();
    let inject = ["agent", "inject", pause.to_str().unwrap(), "--duration", "30s", "--state-dir", state_arg];
    let refused = run(&mut chaos_with_caps(&net.a, &without("KILL"), &inject), Duration::from_secs(60));
    assert!(!refused.success, "paused another user's process without CAP_KILL:\n{}", refused.output);
    assert!(
        refused.output.contains("sending SIGSTOP") && refused.output.contains("EPERM"),
        "{}",
        refused.output
    );
    assert!(victim_running(victim.pid()), "nobody's process was never stopped");
    assert!(journal_is_empty(&state), "the failed apply left no record");
}

fn victim_running(pid: u32) -> bool {
    matches!(process_state(pid), Some('S' | 'R' | 'D'))
}

fn journal_is_empty(state: &Path) -> bool {
    std::fs::read_dir(state.join("journal")).map_or(true, |mut entries| entries.next().is_none())
}

// === the manifests' commands, run ===

/// A child process killed (SIGKILL) and reaped on drop.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// SIGTERM, then the exit status within `within`.
    fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let end = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "pid {} did not exit within {within:?} of SIGTERM", self.0.id());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The content of the Secrets the deployment expects, as `kubectl create secret` would hold them.
struct Secrets {
    api_token: String,
    agent_token: String,
    certs: PathBuf,
}

impl Secrets {
    fn key(&self, secret: &str, key: &str) -> Vec<u8> {
        match (secret, key) {
            ("chaos-tokens", "api.token") => format!("admin {}\n", self.api_token).into_bytes(),
            ("chaos-tokens", "agent.token") => format!("{}\n", self.agent_token).into_bytes(),
            ("chaos-controller-tls", "tls.crt") => std::fs::read(self.certs.join("controller.pem")).unwrap(),
            ("chaos-controller-tls", "tls.key") => std::fs::read(self.certs.join("controller.key")).unwrap(),
            ("chaos-controller-tls", "ca.crt") => std::fs::read(self.certs.join("ca.pem")).unwrap(),
            other => panic!("the deployment uses a Secret key this test does not know: {other:?}"),
        }
    }
}

/// The files of a Secret or ConfigMap volume: path and content.
type Files = Vec<(String, Vec<u8>)>;

/// Lays out the pod's volumes under `dir` the way the kubelet does (Secret and ConfigMap keys behind the
/// `..data` symlink, the `defaultMode`, the fsGroup owning them) and returns each mount path with its host
/// directory. hostPath volumes become fresh directories (the agent's journal and /var/tmp); the CRI socket,
/// unused yet, is left out.
fn lay_out_volumes(
    pod: &Value,
    container: &Value,
    objects: &[(String, Value)],
    secrets: &Secrets,
    dir: &Path,
) -> Vec<(String, PathBuf)> {
    use std::os::unix::fs::PermissionsExt as _;
    let fs_group = pod["securityContext"]["fsGroup"].as_u64().map(|g| g as u32);
    let own = |path: &Path| {
        if let Some(group) = fs_group {
            std::os::unix::fs::lchown(path, Some(0), Some(group)).unwrap();
        }
    };
    let mut mounts = Vec::new();
    for mount in container["volumeMounts"].as_array().unwrap() {
        let (name, at) = (mount["name"].as_str().unwrap(), mount["mountPath"].as_str().unwrap());
        let host = dir.join(name);
        let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == name);
        let files: Option<(Files, u32)> = match volume {
            // A volumeClaimTemplate: a directory the fsGroup may write (setgid, group rwx), as the kubelet makes it.
            None => {
                std::fs::create_dir(&host).unwrap();
                own(&host);
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o2775)).unwrap();
                None
            }
            Some(v) if v["hostPath"]["type"] == "Socket" => continue,
            Some(v) if v.get("hostPath").is_some() || v.get("emptyDir").is_some() => {
                std::fs::create_dir(&host).unwrap();
                None
            }
            Some(v) if v.get("secret").is_some() => {
                let secret = v["secret"]["secretName"].as_str().unwrap();
                let items = v["secret"]["items"].as_array().expect("Secret volumes name their items");
                let files = items
                    .iter()
                    .map(|i| {
                        (
                            i["path"].as_str().unwrap().to_string(),
                            secrets.key(secret, i["key"].as_str().unwrap()),
                        )
                    })
                    .collect();
                Some((files, v["secret"]["defaultMode"].as_u64().expect("defaultMode") as u32))
            }
            Some(v) if v.get("configMap").is_some() => {
                let map = object(objects, "ConfigMap", v["configMap"]["name"].as_str().unwrap());
                let data = map["data"].as_object().unwrap();
                Some((
                    data.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().as_bytes().to_vec())).collect(),
                    0o644,
                ))
            }
            Some(v) => panic!("a volume of a kind this test does not lay out: {v}"),
        };
        if let Some((files, mode)) = files {
            let data = host.join("..2026_12_07_00_00_00.000000000");
            std::fs::create_dir_all(&data).unwrap();
            std::os::unix::fs::symlink("..2026_12_07_00_00_00.000000000", host.join("..data")).unwrap();
            for (path, bytes) in files {
                let file = data.join(&path);
                std::fs::write(&file, bytes).unwrap();
                own(&file);
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
                std::os::unix::fs::symlink(format!("..data/{path}"), host.join(&path)).unwrap();
            }
        }
        mounts.push((at.to_string(), host));
    }
    mounts
}

/// `text` (a value, or `--flag=VALUE`) with a value under a mount path moved under its host directory (the
/// longest mount that holds it, once), and `$(VAR)` replaced from the container's `env`.
fn remap(text: &str, mounts: &[(String, PathBuf)], env: &[(String, String)]) -> String {
    let (prefix, value) = match text.split_once('=') {
        Some((flag, value)) if flag.starts_with("--") => (format!("{flag}="), value),
        _ => (String::new(), text),
    };
    let holder = mounts
        .iter()
        .filter(|(at, _)| value == at || value.starts_with(&format!("{at}/")))
        .max_by_key(|(at, _)| at.len());
    let mut out = match holder {
        Some((at, host)) => format!("{prefix}{}{}", host.display(), &value[at.len()..]),
        None => text.to_string(),
    };
    for (name, value) in env {
        out = out.replace(&format!("$({name})"), value);
    }
    out
}

/// The container's command line and environment with the pod's volumes at `mounts`: `(args, env)`.
fn command_line(
    container: &Value,
    mounts: &[(String, PathBuf)],
    node: &str,
) -> (Vec<String>, Vec<(String, String)>) {
    let mut env = Vec::new();
    for e in container["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        let value = match e["value"].as_str() {
            Some(value) => remap(value, mounts, &env),
            None => {
                assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName", "{name}");
                node.to_string()
            }
        };
        env.push((name, value));
    }
    let args = args(container).iter().map(|a| remap(a, mounts, &env)).collect();
    (args, env)
}

/// `setpriv` arguments giving a process the container's user, group, fsGroup, capabilities and no_new_privs.
fn privileges(pod: &Value, container: &Value) -> Vec<String> {
    let security = &container["securityContext"];
    let uid = security["runAsUser"].as_u64().or(pod["securityContext"]["runAsUser"].as_u64()).unwrap();
    let gid = security["runAsGroup"].as_u64().or(pod["securityContext"]["runAsGroup"].as_u64()).unwrap();
    let groups = pod["securityContext"]["fsGroup"].as_u64().map_or("-".to_string(), |g| g.to_string());
    let mut caps = String::from("-all");
    for cap in security["capabilities"]["add"].as_array().into_iter().flatten() {
        caps.push_str(&format!(",+{}", cap.as_str().unwrap().to_ascii_lowercase()));
    }
    let mut out = vec![format!("--reuid={uid}"), format!("--regid={gid}")];
    if groups == "-" {
        out.push("--clear-groups".into());
    } else {
        out.push(format!("--groups={groups}"));
    }
    out.extend(["--bounding-set".into(), caps, "--inh-caps=-all".into()]);
    if security["allowPrivilegeEscalation"] == false {
        out.push("--no-new-privs".into());
    }
    out
}

/// The `chaos` binary as the container runs it: `setpriv` with the container's [`privileges`], and with
/// `readOnlyRootFilesystem` in a mount namespace of its own whose root is read-only, `scratch` (where the test
/// laid out the pod's volumes) excepted: the container writes nowhere but its volumes.
fn as_container(pod: &Value, container: &Value, scratch: &Path) -> Command {
    let mut cmd = if container["securityContext"]["readOnlyRootFilesystem"] == true {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$0" "$0" && mount -o remount,bind,ro / && exec "$@""#)
            .arg(scratch)
            .arg("setpriv");
        cmd
    } else {
        Command::new("setpriv")
    };
    cmd.args(privileges(pod, container)).arg("--").arg(env!("CARGO_BIN_EXE_chaos"));
    cmd
}

/// Runs the controller and one agent with exactly the manifests' arguments, environment, users, capabilities
/// and volume layout (paths moved under a scratch directory, the listen addresses on loopback port 0): the agent
/// enrols with the Secret's token and is listed with its node label. Done for the base deployment and for the
/// TLS overlay (the controller's certificate from `chaos certs`, as its comments say).
#[test]
fn the_manifests_commands_run_a_controller_and_an_agent_that_enrols() {
    use std::io::BufRead as _;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    for (variant, objects) in [("plain", base_objects()), ("tls", tls_objects())] {
        let dir = TempDir::new(&format!("deploy-run-{variant}"));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let certs = dir.path().join("certs");
        sh(&[
            env!("CARGO_BIN_EXE_chaos"),
            "certs",
            "--out",
            certs.to_str().unwrap(),
            "--host",
            "chaos-controller.chaos.svc.cluster.local",
            "--host",
            "127.0.0.1",
        ]);
        let secrets = Secrets {
            api_token: format!("{:064x}", 0xa11ce_u64),
            agent_token: format!("{:064x}", 0xb0b_u64),
            certs,
        };

        let set = object(&objects, "StatefulSet", "chaos-controller");
        let pod = &set["spec"]["template"]["spec"];
        let container = only_container(pod);
        let controller_dir = dir.path().join("controller");
        std::fs::create_dir(&controller_dir).unwrap();
        let mounts = lay_out_volumes(pod, container, &objects, &secrets, &controller_dir);
        let (mut args, env) = command_line(container, &mounts, "k8s-node-1");
        for arg in &mut args {
            if arg.starts_with("--listen=") || arg.starts_with("--ui-listen=") {
                let flag = arg.split('=').next().unwrap().to_string();
                *arg = format!("{flag}=127.0.0.1:0");
            }
        }
        let mut controller = Running(
            as_container(pod, container, dir.path())
                .args(&args)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap())
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start the controller"),
        );
        let controller_err = drain(controller.0.stderr.take().unwrap());
        let mut lines = std::io::BufReader::new(controller.0.stdout.take().unwrap()).lines();
        let first = match lines.next() {
            Some(Ok(line)) => line,
            _ => panic!("{variant}: the controller printed nothing:\n{}", {
                let _ = controller.0.kill();
                controller_err.join().unwrap()
            }),
        };
        std::thread::spawn(move || for _ in lines {});
        let addr =
            first.strip_prefix("listening on ").unwrap_or_else(|| panic!("{variant}: {first}")).to_string();

        let daemon = object(&objects, "DaemonSet", "chaos-agent");
        let pod = &daemon["spec"]["template"]["spec"];
        let container = container_named(pod, "agent");
        let agent_dir = dir.path().join("agent");
        std::fs::create_dir(&agent_dir).unwrap();
        let mounts = lay_out_volumes(pod, container, &objects, &secrets, &agent_dir);
        let (args, mut env) = command_line(container, &mounts, "k8s-node-1");
        let url = env.iter_mut().find(|(k, _)| k == "CHAOS_CONTROLLER").expect("CHAOS_CONTROLLER");
        url.1 = url.1.replace("chaos-controller.chaos.svc.cluster.local:7400", &addr);
        let url = url.1.clone();
        assert_eq!(url.starts_with("https://"), variant == "tls", "{variant}: {url}");
        let mut agent = Running(
            as_container(pod, container, dir.path())
                .args(&args)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap())
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start the agent"),
        );
        let agent_err = drain(agent.0.stderr.take().unwrap());

        // The agent is listed, connected, with its id and label from the node's name.
        let mut listed = String::new();
        let enrolled = chaos_test_support::wait::poll_until(Duration::from_secs(60), || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaos"));
            cmd.args(["agents", "--json", "--controller", &url, "--token", &secrets.api_token]);
            if variant == "tls" {
                cmd.arg("--ca").arg(secrets.certs.join("ca.pem"));
            }
            let out = cmd.output().unwrap();
            listed =
                String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            let rows: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            rows.as_array().is_some_and(|rows| {
                rows.iter().any(|a| {
                    a["id"] == "k8s-node-1"
                        && a["labels"]["node"] == "k8s-node-1"
                        && a["health"] == "connected"
                })
            })
        });
        if !enrolled {
            let (a, c) =
                (agent.terminate(Duration::from_secs(60)), controller.terminate(Duration::from_secs(60)));
            panic!(
                "{variant}: the agent did not enrol: {listed}\nagent ({a}):\n{}\ncontroller ({c}):\n{}",
                agent_err.join().unwrap(),
                controller_err.join().unwrap()
            );
        }
        // SIGTERM, as the kubelet sends: both exit cleanly.
        let status = agent.terminate(Duration::from_secs(60));
        assert!(status.success(), "{variant}: agent exit {status}:\n{}", agent_err.join().unwrap());
        let status = controller.terminate(Duration::from_secs(60));
        assert!(status.success(), "{variant}: controller exit {status}:\n{}", controller_err.join().unwrap());
        // The store is the controller's own, private, on the claim.
        let data = env.iter().find(|(k, _)| k == "CHAOS_STATE_DIR").map(|(_, v)| PathBuf::from(v)).unwrap();
        assert!(
            data.join("journal").is_dir() || data.is_dir(),
            "{variant}: the agent's state dir {}",
            data.display()
        );
        let db = controller_dir.join("data").join("controller.db");
        let meta = std::fs::metadata(&db).unwrap_or_else(|e| panic!("{variant}: {}: {e}", db.display()));
        let uid = set["spec"]["template"]["spec"]["securityContext"]["runAsUser"].as_u64().unwrap();
        assert_eq!((u64::from(meta.uid()), meta.mode() & 0o777), (uid, 0o600), "{variant}: controller.db");
    }
}
