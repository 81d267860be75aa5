//! Pods as targets through the container runtime, with a real containerd (chaos_test_support::containerd: its
//! own root, state and socket, CNI bridge networking, a busybox image imported locally). Pods are created through
//! the CRI with labels; `chaos agent pods` finds exactly the selected ones; `chaos agent inject --pod` confines
//! each fault to them: a partition inside the pod's network namespace only (a pod beside it still reaches its
//! neighbours), CPU and memory stress workers in the pod's cgroup (the memory charged to it), a pause and a kill of the selected containers'
//! processes only; a SIGKILLed agent's faults are reverted by its watchdog with no manual step; a pod removed
//! while faulted is no error on revert; a protected namespace is refused before anything changes. Disk fill
//! lands in the pod's volume or its root filesystem (symlinks resolved inside the container), with exactly the
//! DaemonSet's capabilities for another user's container; an agent container SIGKILLed with its watchdog is
//! reverted by the guard container beside it. The agent and the guard run as containerd containers there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use chaos_proto::cri::{self, RuntimeServiceClient, v1};
use chaos_test_support::containerd::{Containerd, IMAGE};
use chaos_test_support::net::nft_tables;
use chaos_test_support::{TempDir, containerd, process_state, skip, wait_until};
use serde_json::Value;
use tonic::transport::Channel;

type Cri = RuntimeServiceClient<Channel>;

/// A pod the test made: its sandbox and its one container.
struct TestPod {
    sandbox: String,
    config: v1::PodSandboxConfig,
}

async fn run_pod(cri: &mut Cri, fixture: &Containerd, namespace: &str, name: &str, app: &str) -> TestPod {
    let script = format!("echo {name} > /index.html; exec httpd -f -p 8080 -h /");
    run_pod_with(cri, fixture, (namespace, name, app), &script, Vec::new()).await
}

/// A pod whose one container (named `app`) runs `script` with `mounts`.
async fn run_pod_with(
    cri: &mut Cri,
    fixture: &Containerd,
    ids: (&str, &str, &str),
    script: &str,
    mounts: Vec<v1::Mount>,
) -> TestPod {
    run_pod_configured(cri, fixture, ids, script, mounts, v1::ContainerConfig::default()).await
}

/// [`run_pod_with`], the container's other settings taken from `base`.
async fn run_pod_configured(
    cri: &mut Cri,
    fixture: &Containerd,
    (namespace, name, app): (&str, &str, &str),
    script: &str,
    mounts: Vec<v1::Mount>,
    base: v1::ContainerConfig,
) -> TestPod {
    let config = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}-{}", chaos_test_support::nonce()),
            namespace: namespace.into(),
            attempt: 0,
        }),
        hostname: name.into(),
        labels: HashMap::from([("app".to_string(), app.to_string())]),
        linux: Some(v1::LinuxPodSandboxConfig {
            cgroup_parent: fixture.cgroup_parent.clone(),
            security_context: None,
        }),
        ..Default::default()
    };
    let TestPod { sandbox, config } = run_sandbox(cri, fixture, config).await;
    let container = v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata { name: app.into(), attempt: 0 }),
        image: Some(v1::ImageSpec { image: IMAGE.into() }),
        command: vec!["/bin/sh".into()],
        args: vec!["-c".into(), script.into()],
        mounts,
        ..base
    };
    let id = cri
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container),
            sandbox_config: Some(config.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer in {name}: {e}\n{}", fixture.log()))
        .into_inner()
        .container_id;
    cri.start_container(v1::StartContainerRequest { container_id: id })
        .await
        .unwrap_or_else(|e| panic!("StartContainer in {name}: {e}\n{}", fixture.log()));
    TestPod { sandbox, config }
}

async fn remove_pod(cri: &mut Cri, pod: &TestPod) {
    cri.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: pod.sandbox.clone() }).await.unwrap();
    cri.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: pod.sandbox.clone() })
        .await
        .unwrap();
}

fn chaos(fixture: &Containerd, args: &[&str]) -> Command {
    let mut cmd = Command::new(support::chaos_bin());
    cmd.args(args).env("CHAOS_CRI_SOCKET", &fixture.socket).env_remove("CHAOS_STATE_DIR");
    cmd
}

/// `chaos agent pods --json` for `selector`.
fn pods(fixture: &Containerd, selector: &str) -> Vec<Value> {
    let out =
        support::output_within(&mut chaos(fixture, &["agent", "pods", "--pod", selector, "--json"]), WAIT);
    assert!(out.status.success(), "{}", support::describe_output(&out));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

const WAIT: Duration = Duration::from_secs(60);

/// Whether curl from inside network namespace `from` gets an answer from `ip`:8080 within 2 s.
fn reaches(from: &str, ip: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", from, "curl", "-sf", "-m", "2", "-o", "/dev/null"])
        .arg(format!("http://{ip}:8080/"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The memory charged to the cgroup at `path`: `memory.current` (cgroup v2) or `memory.usage_in_bytes` (v1).
fn memory_charged(path: &str) -> u64 {
    let relative = path.trim_start_matches('/');
    let candidates = [
        format!("/sys/fs/cgroup/{relative}/memory.current"),
        format!("/sys/fs/cgroup/memory/{relative}/memory.usage_in_bytes"),
    ];
    candidates
        .iter()
        .find_map(|file| std::fs::read_to_string(file).ok())
        .unwrap_or_else(|| panic!("no memory accounting for cgroup {path}: {candidates:?}"))
        .trim()
        .parse()
        .unwrap()
}

fn ppid(pid: i32) -> Option<i32> {
    chaos_test_support::process::stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse().ok()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_reach_exactly_the_selected_pods_and_go_with_a_killed_agent() {
    if !skip::require("containerd", containerd::available().and_then(|()| skip::program("curl"))) {
        return;
    }
    let fixture = Containerd::start();
    let mut cri = cri::connect(&fixture.socket, Duration::from_secs(10)).await.unwrap();
    let cart = run_pod(&mut cri, &fixture, "shop", "cart-1", "cart").await;
    let web1 = run_pod(&mut cri, &fixture, "shop", "web-1", "web").await;
    let web2 = run_pod(&mut cri, &fixture, "shop", "web-2", "web").await;
    let system = run_pod(&mut cri, &fixture, "kube-system", "cart-sys", "cart").await;
    let dir = TempDir::new("pods-cri");
    let socket = fixture.socket.display().to_string();

    // Found by namespace and labels, with the container's task, cgroup and the pod's namespace.
    let found = pods(&fixture, "shop/app=cart");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        (found[0]["name"].as_str(), found[0]["sandbox_id"].as_str()),
        (Some("cart-1"), Some(cart.sandbox.as_str()))
    );
    let container = &found[0]["containers"][0];
    assert_eq!(container["name"], "cart");
    let cart_pid = container["pid"].as_i64().unwrap() as i32;
    let cart_cgroup = container["cgroup"].as_str().unwrap().to_string();
    assert!(cart_cgroup.starts_with(&fixture.cgroup_parent), "{cart_cgroup}");
    let cart_netns = found[0]["netns"].as_str().unwrap().to_string();
    let cart_ip = found[0]["ip"].as_str().unwrap().to_string();
    let webs = pods(&fixture, "shop/app=web");
    assert_eq!(webs.iter().map(|p| p["name"].as_str().unwrap()).collect::<Vec<_>>(), ["web-1", "web-2"]);
    let (web1_netns, web2_ip) =
        (webs[0]["netns"].as_str().unwrap().to_string(), webs[1]["ip"].as_str().unwrap().to_string());
    let web_pids: Vec<i32> =
        webs.iter().map(|p| p["containers"][0]["pid"].as_i64().unwrap() as i32).collect();
    assert!(pods(&fixture, "shop/app=none").is_empty());
    // What the controller chose, resolved again at apply time: the same sandbox only.
    let pod_ref = |name: &str, sandbox: &str| chaos_proto::v1::PodRef {
        namespace: "shop".into(),
        name: name.into(),
        sandbox_id: sandbox.into(),
        container: "cart".into(),
    };
    let (pod, resolved) =
        chaos_agent::pods::resolve(&fixture.socket, &pod_ref("cart-1", &cart.sandbox)).await.unwrap();
    assert_eq!((pod.name.as_str(), resolved.pid), ("cart-1", cart_pid));
    let stale =
        chaos_agent::pods::resolve(&fixture.socket, &pod_ref("cart-1", "0123456789ab")).await.unwrap_err();
    assert!(
        stale.to_string().contains(&format!("recreated (its sandbox is now {})", cart.sandbox)),
        "{stale}"
    );
    let gone =
        chaos_agent::pods::resolve(&fixture.socket, &pod_ref("cart-9", "0123456789ab")).await.unwrap_err();
    assert!(gone.to_string().contains("no such ready pod"), "{gone}");
    wait_until("web-1 reaches cart-1 and web-2", WAIT, || {
        reaches(&web1_netns, &cart_ip) && reaches(&web1_netns, &web2_ip)
    });

    // A protected namespace is refused before anything changes.
    let partition = dir.path().join("partition.yaml");
    std::fs::write(
        &partition,
        "- kind: network-partition\n- kind: cpu-stress\n  workers: 1\n  load: 5\n- kind: memory-stress\n  size: 64MiB\n",
    )
    .unwrap();
    let refused = support::output_within(
        chaos(
            &fixture,
            &["agent", "inject", "--pod", "kube-system/app=cart", "--duration", "30s", "--state-dir"],
        )
        .arg(dir.path().join("state"))
        .arg(&partition),
        WAIT,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", support::describe_output(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("protected-namespaces"),
        "{}",
        support::describe_output(&refused)
    );

    // The dry run names pod, container, pid, cgroup and namespace.
    let planned = support::output_within(
        chaos(&fixture, &["agent", "inject", "--pod", "shop/app=cart", "--dry-run", "--state-dir"])
            .arg(dir.path().join("state"))
            .arg(&partition),
        WAIT,
    );
    let plan = String::from_utf8_lossy(&planned.stdout);
    assert!(planned.status.success(), "{}", support::describe_output(&planned));
    assert!(
        plan.contains("in pod shop/cart-1") && plan.contains(&cart_netns) && plan.contains(&cart_cgroup),
        "{plan}"
    );

    // Partition, CPU and memory stress in cart-1: its namespace only, its cgroup, its memory accounting.
    let memory_before = memory_charged(&cart_cgroup);
    let state = dir.path().join("state");
    let mut inject = support::Injector::start(
        &partition,
        &state,
        &["--pod", "shop/app=cart", "--duration", "120s", "--cri-socket", &socket],
    );
    let lines = inject.expect("injected ", 3);
    assert!(lines.iter().all(|l| l.contains("(pod shop/cart-1, container cart)")), "{lines:?}");
    assert_eq!(nft_tables(&cart_netns, "chaos").len(), 1, "the partition's table in cart-1's namespace");
    assert!(nft_tables(&web1_netns, "chaos").is_empty(), "nothing in web-1's namespace");
    assert!(!reaches(&web1_netns, &cart_ip), "web-1 still reaches the partitioned cart-1");
    assert!(reaches(&web1_netns, &web2_ip), "web-1 no longer reaches web-2: the partition leaked");
    let agent_pid = inject.child.id() as i32;
    let workers: Vec<i32> =
        fixture.pids_in_cgroups().into_iter().filter(|p| ppid(*p) == Some(agent_pid)).collect();
    assert_eq!(workers.len(), 2, "a CPU and a memory worker in the fixture's cgroups: {workers:?}");
    for worker in &workers {
        let cgroups = std::fs::read_to_string(format!("/proc/{worker}/cgroup")).unwrap();
        assert!(cgroups.contains(&cart_cgroup), "worker {worker} is not in cart-1's cgroup: {cgroups}");
    }
    // The memory worker joined before it touched a page: the container is charged for all of it, so its own
    // memory limit applies (a worker moved in afterwards would leave its pages charged to the agent's cgroup,
    // and the container's charge would stay near its own few hundred KiB; that charge itself moves by a few
    // pages meanwhile, so the check is on the 64 MiB alone).
    let memory_during = memory_charged(&cart_cgroup);
    assert!(
        memory_during >= 64 * 1024 * 1024 && memory_before < 16 * 1024 * 1024,
        "cart-1's cgroup is charged {memory_during} bytes with the stress on, {memory_before} before"
    );

    // SIGKILL the agent mid-fault: its watchdog reverts both, no manual step.
    inject.child.kill().unwrap();
    inject.wait();
    wait_until("the partition reverted by the watchdog", WAIT, || {
        nft_tables(&cart_netns, "chaos").is_empty()
    });
    wait_until("the stress workers gone", WAIT, || workers.iter().all(|w| process_state(*w).is_none()));
    assert!(reaches(&web1_netns, &cart_ip), "cart-1 unreachable after the revert");

    // A pause of the web containers: both web pods' processes, not cart's; resumed at the end.
    let pause = dir.path().join("pause.yaml");
    std::fs::write(&pause, "kind: process-pause\ntarget: { name: httpd }\ncount: 100%\n").unwrap();
    let mut paused = support::Injector::start(
        &pause,
        &state,
        &["--pod", "shop/app=web", "--container", "web", "--duration", "3s", "--cri-socket", &socket],
    );
    paused.expect("injected ", 2);
    for pid in &web_pids {
        assert_eq!(process_state(*pid), Some('T'), "web pid {pid} not paused");
    }
    assert_ne!(process_state(cart_pid), Some('T'), "cart-1 paused too");
    assert!(paused.wait().success());
    for pid in &web_pids {
        assert_ne!(process_state(*pid), Some('T'), "web pid {pid} still paused after the revert");
    }

    // A pod removed while faulted: the revert finds its namespace gone and is no error.
    let partition_only = dir.path().join("partition-only.yaml");
    std::fs::write(&partition_only, "kind: network-partition\n").unwrap();
    let mut held = support::Injector::start(
        &partition_only,
        &state,
        &["--pod", "shop/app=web", "--duration", "4s", "--cri-socket", &socket],
    );
    held.expect("injected ", 2);
    remove_pod(&mut cri, &web2).await;
    let status = held.wait();
    assert!(status.success(), "reverting faults in a removed pod failed: {status}");
    assert!(nft_tables(&web1_netns, "chaos").is_empty());

    // A kill reaches cart-1's process only.
    let kill = dir.path().join("kill.yaml");
    std::fs::write(&kill, "kind: process-kill\ntarget: { name: httpd }\n").unwrap();
    let killed = support::output_within(
        chaos(&fixture, &["agent", "inject", "--pod", "shop/app=cart", "--duration", "1s", "--state-dir"])
            .arg(&state)
            .arg(&kill),
        WAIT,
    );
    assert!(killed.status.success(), "{}", support::describe_output(&killed));
    wait_until("cart-1's httpd killed", WAIT, || process_state(cart_pid).is_none());
    assert!(process_state(web_pids[0]).is_some(), "web-1 killed too");

    for pod in [&cart, &web1, &system] {
        remove_pod(&mut cri, pod).await;
    }
    let _ = web2.config;
}

/// The `chaos-fill-*` files directly in `dir`.
fn fill_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("chaos-fill-")))
        .collect()
}

/// Bytes allocated to `path` (`st_blocks` × 512).
fn allocated(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_fill_lands_in_the_pods_volume_or_its_root_and_goes_with_a_killed_agent() {
    if !skip::require("containerd", containerd::available()) {
        return;
    }
    let fixture = Containerd::start();
    let mut cri = cri::connect(&fixture.socket, Duration::from_secs(10)).await.unwrap();
    let dir = TempDir::new("pods-fill");
    let (volume, readonly) = (dir.path().join("volume"), dir.path().join("readonly"));
    std::fs::create_dir_all(volume.join("cache")).unwrap();
    std::fs::create_dir_all(&readonly).unwrap();
    // What the pod may put in its volume: a symlink out of it, which a fill must not follow.
    std::os::unix::fs::symlink("/etc", volume.join("escape")).unwrap();
    let mount = |inside: &str, node: &std::path::Path, readonly: bool| v1::Mount {
        container_path: inside.into(),
        host_path: node.display().to_string(),
        readonly,
    };
    // In its root: an absolute symlink, which resolves inside the container's root, not the node's.
    let script = "mkdir -p /var/spool; ln -s /var/spool /spool; ln -s /etc /hostetc; exec sleep 3600";
    let store = run_pod_with(
        &mut cri,
        &fixture,
        ("shop", "store-1", "store"),
        script,
        vec![mount("/data", &volume, false), mount("/ro", &readonly, true)],
    )
    .await;
    let found = pods(&fixture, "shop/app=store");
    assert_eq!(found.len(), 1, "{found:?}");
    let pid = found[0]["containers"][0]["pid"].as_i64().unwrap();
    let root = std::path::PathBuf::from(format!("/proc/{pid}/root"));
    wait_until("the container's symlinks", WAIT, || root.join("spool").exists());
    let state = dir.path().join("state");
    let socket = fixture.socket.display().to_string();
    let spec = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path
    };
    let inject_once = |file: &std::path::Path, extra: &[&str]| {
        support::output_within(
            chaos(&fixture, &["agent", "inject", "--pod", "shop/app=store", "--state-dir"])
                .arg(&state)
                .args(extra)
                .arg(file),
            WAIT,
        )
    };

    // Refused before anything is written: a read-only volume, a symlink out of a volume, a relative path.
    for (name, body, why) in [
        ("ro.yaml", "kind: disk-fill\npath: /ro\nsize: 1MiB\n", "read-only volume of container store (/ro)"),
        ("escape.yaml", "kind: disk-fill\npath: /data/escape\nsize: 1MiB\n", "is not under any allowed path"),
        ("relative.yaml", "kind: disk-fill\npath: data\nsize: 1MiB\n", "absolute path inside the container"),
    ] {
        let out = inject_once(&spec(name, body), &["--duration", "5s"]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", support::describe_output(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{name}: {}",
            support::describe_output(&out)
        );
    }
    assert!(fill_files(&readonly).is_empty() && fill_files(std::path::Path::new("/etc")).is_empty());

    // The dry run says where each fill goes.
    let fills = spec(
        "fills.yaml",
        "- kind: disk-fill\n  path: /data/cache\n  size: 8MiB\n- kind: disk-fill\n  path: /spool\n  size: 8MiB\n\
         - kind: disk-fill\n  path: /hostetc\n  size: 1MiB\n",
    );
    let planned = inject_once(&fills, &["--dry-run"]);
    assert!(planned.status.success(), "{}", support::describe_output(&planned));
    let plan = String::from_utf8_lossy(&planned.stdout);
    assert!(
        plan.contains(&format!(
            "/data/cache in the container (its volume at {} on the node",
            volume.display()
        )),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("/spool in the container's root filesystem (through /proc/{pid}/root)")),
        "{plan}"
    );

    // Applied: in the volume (seen on the node), in the container's root (its /var/spool, through the
    // symlink), and in the container's /etc, never the node's.
    let mut inject = support::Injector::start(
        &fills,
        &state,
        &["--pod", "shop/app=store", "--duration", "120s", "--cri-socket", &socket],
    );
    inject.expect("injected ", 3);
    let in_volume = fill_files(&volume.join("cache"));
    assert_eq!(in_volume.len(), 1, "{in_volume:?}");
    assert!(allocated(&in_volume[0]) >= 8 * 1024 * 1024, "{}", in_volume[0].display());
    let in_root = fill_files(&root.join("var/spool"));
    assert_eq!(in_root.len(), 1, "{in_root:?}");
    assert!(allocated(&in_root[0]) >= 8 * 1024 * 1024);
    assert_eq!(
        fill_files(&root.join("etc")).len(),
        1,
        "the fill through /hostetc is in the container's /etc"
    );
    assert!(fill_files(std::path::Path::new("/etc")).is_empty(), "a fill reached the node's /etc");
    assert!(
        fill_files(std::path::Path::new("/var/spool")).is_empty(),
        "a fill reached the node's /var/spool"
    );

    // SIGKILL the agent: its watchdog deletes all three, through the node's path and the container's root.
    inject.child.kill().unwrap();
    inject.wait();
    wait_until("the fills reverted by the watchdog", WAIT, || {
        fill_files(&volume.join("cache")).is_empty()
            && fill_files(&root.join("var/spool")).is_empty()
            && fill_files(&root.join("etc")).is_empty()
    });
    remove_pod(&mut cri, &store).await;
}

/// A pod like the agent's DaemonSet makes: the node's PID and network namespaces, its containers' logs under
/// `work/logs`.
async fn run_node_pod(cri: &mut Cri, fixture: &Containerd, name: &str, work: &std::path::Path) -> TestPod {
    let config = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}-{}", chaos_test_support::nonce()),
            namespace: "chaos".into(),
            attempt: 0,
        }),
        log_directory: work.join("logs").display().to_string(),
        labels: HashMap::from([("app".to_string(), "chaos-agent".to_string())]),
        linux: Some(v1::LinuxPodSandboxConfig {
            cgroup_parent: fixture.cgroup_parent.clone(),
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(node_namespaces()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    run_sandbox(cri, fixture, config).await
}

/// The sandbox of `config`, running.
async fn run_sandbox(cri: &mut Cri, fixture: &Containerd, config: v1::PodSandboxConfig) -> TestPod {
    let name = config.metadata.as_ref().map(|m| format!("{}/{}", m.namespace, m.name)).unwrap_or_default();
    let sandbox = cri
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}\n{}", fixture.log()))
        .into_inner()
        .pod_sandbox_id;
    TestPod { sandbox, config }
}

fn node_namespaces() -> v1::NamespaceOption {
    v1::NamespaceOption {
        pid: v1::NamespaceMode::Node as i32,
        network: v1::NamespaceMode::Node as i32,
        ..Default::default()
    }
}

/// A container of a [`run_node_pod`] pod that runs the `chaos` binary under test, as the agent's DaemonSet
/// runs it: root, the node's PID namespace, the binary and the C library it links mounted, `work` at `/work`,
/// the runtime's CRI socket at `/cri.sock`, and `caps` as its capabilities (all others dropped) when given.
struct ChaosContainer<'a> {
    name: &'a str,
    attempt: u32,
    args: &'a [&'a str],
    caps: Option<Vec<String>>,
}

impl ChaosContainer<'_> {
    /// Creates and starts it; returns its id. Its output goes to `work/logs/NAME-ATTEMPT.log`.
    async fn start(
        &self,
        cri: &mut Cri,
        fixture: &Containerd,
        pod: &TestPod,
        work: &std::path::Path,
    ) -> String {
        let bind = |host: &str, inside: &str, readonly: bool| v1::Mount {
            container_path: inside.into(),
            host_path: host.into(),
            readonly,
        };
        let mounts = vec![
            bind(&support::chaos_bin().display().to_string(), "/chaos", true),
            bind("/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", true),
            bind("/lib64", "/lib64", true),
            bind(&work.display().to_string(), "/work", false),
            bind(&fixture.socket.display().to_string(), "/cri.sock", false),
        ];
        let capabilities = self.caps.as_ref().map(|caps| v1::Capability {
            add_capabilities: caps.clone(),
            drop_capabilities: vec!["ALL".into()],
        });
        let config = v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata { name: self.name.into(), attempt: self.attempt }),
            image: Some(v1::ImageSpec { image: IMAGE.into() }),
            command: vec!["/chaos".into()],
            args: self.args.iter().map(|a| a.to_string()).collect(),
            envs: vec![v1::KeyValue { key: "RUST_LOG".into(), value: "info".into() }],
            mounts,
            log_path: self.log_name(),
            linux: Some(v1::LinuxContainerConfig {
                security_context: Some(v1::LinuxContainerSecurityContext {
                    namespace_options: Some(node_namespaces()),
                    capabilities,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = cri
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod.sandbox.clone(),
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer {}: {e}\n{}", self.name, fixture.log()))
            .into_inner()
            .container_id;
        cri.start_container(v1::StartContainerRequest { container_id: id.clone() })
            .await
            .unwrap_or_else(|e| panic!("StartContainer {}: {e}\n{}", self.name, fixture.log()));
        id
    }

    fn log_name(&self) -> String {
        format!("{}-{}.log", self.name, self.attempt)
    }

    /// Starts it, waits until it exits, and returns its exit code and output.
    async fn run(
        &self,
        cri: &mut Cri,
        fixture: &Containerd,
        pod: &TestPod,
        work: &std::path::Path,
    ) -> (i32, String) {
        let id = self.start(cri, fixture, pod, work).await;
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let status = cri
                .container_status(v1::ContainerStatusRequest { container_id: id.clone(), verbose: false })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap();
            if status.state == v1::ContainerState::ContainerExited as i32 {
                let log =
                    std::fs::read_to_string(work.join("logs").join(self.log_name())).unwrap_or_default();
                return (status.exit_code, log);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "container {} still running after {WAIT:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The capabilities the agent's DaemonSet adds (deploy/kubernetes/agent.yaml).
fn daemonset_caps() -> Vec<String> {
    let text = std::fs::read_to_string(support::repo_path("deploy/kubernetes/agent.yaml")).unwrap();
    let daemonset = text
        .split("\n---\n")
        .map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap())
        .find(|doc| doc["kind"] == "DaemonSet")
        .unwrap();
    let agent = daemonset["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "agent")
        .unwrap()
        .clone();
    agent["securityContext"]["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

/// Disk fill inside a pod whose container runs as another user, in a directory only that user may enter, by
/// the agent in a container with exactly the DaemonSet's capabilities: it fills and reverts. Without
/// `SYS_PTRACE` the container's root cannot be followed, without `DAC_OVERRIDE` its directory cannot be
/// entered: each is needed, and each refusal changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_in_another_users_container_needs_exactly_the_daemonsets_capabilities() {
    if !skip::require("containerd", containerd::available()) {
        return;
    }
    let fixture = Containerd::start();
    let mut cri = cri::connect(&fixture.socket, Duration::from_secs(10)).await.unwrap();
    let work = TempDir::new("pods-caps");
    let own = work.path().join("own");
    std::fs::create_dir(&own).unwrap();
    std::os::unix::fs::chown(&own, Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(&own, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let target = v1::ContainerConfig {
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                run_as_user: Some(v1::Int64Value { value: 1000 }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    // The container's own directory, on its root filesystem: its user's, 0700.
    let app = run_pod_configured(
        &mut cri,
        &fixture,
        ("shop", "owned-1", "owned"),
        "mkdir /tmp/own && chmod 700 /tmp/own && exec sleep 3600",
        vec![v1::Mount {
            container_path: "/own".into(),
            host_path: own.display().to_string(),
            readonly: false,
        }],
        target,
    )
    .await;
    std::fs::write(work.path().join("fill.yaml"), "kind: disk-fill\npath: /tmp/own\nsize: 1MiB\n").unwrap();
    // Its volume, whose node path the agent's container does not see: reached through the container's root it
    // is another filesystem, refused (a file there could outlive its record).
    std::fs::write(work.path().join("volume.yaml"), "kind: disk-fill\npath: /own\nsize: 1MiB\n").unwrap();
    let target_pid = pods(&fixture, "shop/app=owned")[0]["containers"][0]["pid"].as_i64().unwrap();
    let own_dir = std::path::PathBuf::from(format!("/proc/{target_pid}/root/tmp/own"));
    wait_until("the container's own directory", WAIT, || own_dir.is_dir());
    let agent_pod = run_node_pod(&mut cri, &fixture, "chaos-agent-caps", work.path()).await;
    let caps = daemonset_caps();
    for needed in ["SYS_PTRACE", "DAC_OVERRIDE"] {
        assert!(caps.iter().any(|c| c == needed), "the DaemonSet does not add {needed}: {caps:?}");
    }
    let inject = |file: &'static str, state: &'static str| -> Vec<&'static str> {
        vec![
            "agent",
            "inject",
            file,
            "--pod",
            "shop/app=owned",
            "--duration",
            "1s",
            "--cri-socket",
            "/cri.sock",
            "--state-dir",
            state,
        ]
    };
    let left = || std::fs::read_dir(&own_dir).unwrap().count() + std::fs::read_dir(&own).unwrap().count();

    let args = inject("/work/fill.yaml", "/work/state-all");
    let (code, log) = ChaosContainer { name: "all", attempt: 0, args: &args, caps: Some(caps.clone()) }
        .run(&mut cri, &fixture, &agent_pod, work.path())
        .await;
    assert_eq!(code, 0, "the fill with the DaemonSet's capabilities failed:\n{log}");
    assert!(
        log.contains("filled /tmp/own/chaos-fill-") && log.contains("(pod shop/owned-1, container owned)"),
        "{log}"
    );
    assert_eq!(left(), 0, "the fill file was not reverted");

    let args = inject("/work/volume.yaml", "/work/state-volume");
    let (code, log) = ChaosContainer { name: "volume", attempt: 0, args: &args, caps: Some(caps.clone()) }
        .run(&mut cri, &fixture, &agent_pod, work.path())
        .await;
    assert_ne!(code, 0, "filled a volume the agent cannot reach at its node path:\n{log}");
    assert!(log.contains("found another filesystem"), "{log}");
    assert_eq!(left(), 0, "a refused fill left a file");

    for (i, dropped) in ["SYS_PTRACE", "DAC_OVERRIDE"].into_iter().enumerate() {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != dropped).cloned().collect();
        let args = inject("/work/fill.yaml", if i == 0 { "/work/state-ptrace" } else { "/work/state-dac" });
        let (code, log) = ChaosContainer { name: dropped, attempt: 0, args: &args, caps: Some(fewer) }
            .run(&mut cri, &fixture, &agent_pod, work.path())
            .await;
        assert_ne!(code, 0, "filled another user's container without {dropped}:\n{log}");
        assert!(log.contains("Permission denied"), "without {dropped}: {log}");
        assert_eq!(left(), 0, "a refused fill left a file");
    }
    remove_pod(&mut cri, &agent_pod).await;
    remove_pod(&mut cri, &app).await;
}

/// The agent as its DaemonSet runs it: in a container (host PID and network namespaces), its undo journal on
/// a node directory, and `chaos agent guard` in a second container of the same pod. SIGKILLing the agent's
/// container (the runtime's stop with no grace) kills the agent and its own watchdog together; the guard,
/// outside that container, reverts the fault at once. The control: the watchdog really died with the container,
/// so nothing but the guard was left to revert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_container_killed_mid_fault_is_reverted_by_the_guard_beside_it() {
    if !skip::require("containerd", containerd::available()) {
        return;
    }
    let fixture = Containerd::start();
    let mut cri = cri::connect(&fixture.socket, Duration::from_secs(10)).await.unwrap();
    let work = TempDir::new("pods-guard");
    let victim = chaos_test_support::process::Victim::sleep();
    let victim_pid = victim.child.id() as i32;
    std::fs::write(
        work.path().join("pause.yaml"),
        format!("kind: process-pause\ntarget: {{ pid: {victim_pid} }}\n"),
    )
    .unwrap();
    let pod = run_node_pod(&mut cri, &fixture, "chaos-agent-node1", work.path()).await;
    let state = "/work/state";
    let journal_dir = work.path().join("state/journal");
    let records = || std::fs::read_dir(&journal_dir).map_or(0, |d| d.count());
    let inject = ["agent", "inject", "/work/pause.yaml", "--duration", "300s", "--state-dir", state];

    // An agent container, its fault applied; then the container SIGKILLed with its watchdog. The runtime
    // kills every process of the container at the same moment; a watchdog stopped first makes that exact (a
    // running one may still revert in the instant between the agent's death and its own).
    let kill_agent_container = |id: String| {
        let found = pods(&fixture, "chaos/app=chaos-agent");
        let agent_pid = found[0]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id.as_str())
            .and_then(|c| c["pid"].as_i64())
            .unwrap() as u32;
        let watchdogs = support::watchdogs_of(agent_pid);
        assert_eq!(watchdogs.len(), 1, "the agent in its container has its watchdog");
        let watchdog = nix::unistd::Pid::from_raw(watchdogs[0] as i32);
        nix::sys::signal::kill(watchdog, nix::sys::signal::Signal::SIGSTOP).unwrap();
        (id, watchdogs[0] as i32)
    };
    let caps = Some(daemonset_caps());
    let agent = ChaosContainer { name: "agent", attempt: 0, args: &inject, caps: caps.clone() }
        .start(&mut cri, &fixture, &pod, work.path())
        .await;
    wait_until("the victim paused by the agent in its container", WAIT, || {
        process_state(victim_pid) == Some('T')
    });
    assert_eq!(records(), 1, "one undo record");
    let (agent, watchdog) = kill_agent_container(agent);
    cri.stop_container(v1::StopContainerRequest { container_id: agent, timeout: 0 }).await.unwrap();
    wait_until("the watchdog killed with the container", WAIT, || {
        process_state(watchdog).is_none_or(|s| s == 'Z')
    });
    // Nothing of the agent is left to revert: the fault stays (what the guard is for).
    assert_eq!(process_state(victim_pid), Some('T'), "the pause went with the container");
    assert_eq!(records(), 1);

    // The guard, started now, reverts the orphaned record at once.
    ChaosContainer {
        name: "guard",
        attempt: 0,
        args: &["agent", "guard", "--state-dir", state],
        caps: caps.clone(),
    }
    .start(&mut cri, &fixture, &pod, work.path())
    .await;
    wait_until("the orphaned pause reverted by the guard", WAIT, || process_state(victim_pid) != Some('T'));
    wait_until("the record gone", WAIT, || records() == 0);

    // With the guard running, a restarted agent container applies again and is SIGKILLed again: the guard
    // reverts as soon as the agent is gone.
    let agent = ChaosContainer { name: "agent", attempt: 1, args: &inject, caps }
        .start(&mut cri, &fixture, &pod, work.path())
        .await;
    wait_until("the victim paused again", WAIT, || process_state(victim_pid) == Some('T'));
    let (agent, watchdog) = kill_agent_container(agent);
    cri.stop_container(v1::StopContainerRequest { container_id: agent, timeout: 0 }).await.unwrap();
    wait_until("the watchdog killed with the container", WAIT, || {
        process_state(watchdog).is_none_or(|s| s == 'Z')
    });
    wait_until("the pause reverted by the guard", WAIT, || process_state(victim_pid) != Some('T'));
    wait_until("the record gone", WAIT, || records() == 0);
    remove_pod(&mut cri, &pod).await;
}

/// `chaos controller` on 127.0.0.1:0 (at most one pod per run) with its data in `dir`, and `chaos agent serve`
/// dialling it with the fixture's CRI socket; both SIGKILLed on drop.
struct Fleet {
    agent: std::process::Child,
    controller: support::LocalController,
    token: String,
}

impl Fleet {
    fn start(fixture: &Containerd, dir: &std::path::Path) -> Fleet {
        let controller = support::LocalController::start(
            dir,
            &["--heartbeat", "500ms", "--lease", "2s", "--max-pods-per-run", "1"],
        );
        let agent = Command::new(support::chaos_bin())
            .args(["agent", "serve", "--controller", &controller.url, "--id", "node-1", "--token-file"])
            .arg(controller.data.join("agent.token"))
            .arg("--state-dir")
            .arg(dir.join("agent-state"))
            .arg("--cri-socket")
            .arg(&fixture.socket)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
            .spawn()
            .unwrap();
        let token = controller.api_token();
        let fleet = Fleet { agent, controller, token };
        wait_until("the agent connected", WAIT, || {
            let out = fleet.client(&["agents", "--json"]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).contains("\"node-1\"")
        });
        fleet
    }

    fn client(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(support::chaos_bin());
        cmd.args(args)
            .env("CHAOS_CONTROLLER", &self.controller.url)
            .env("CHAOS_TOKEN", &self.token)
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // The agent first (its watchdog reverts whatever it still holds), then the controller (its own drop).
        let _ = self.agent.kill();
        let _ = self.agent.wait();
    }
}

/// The example experiment targeting pods, through a controller (at most one pod per run) and an agent: the dry
/// run names the chosen pod, its node, container, pid, cgroup and namespace; the run partitions then freezes
/// exactly one cart pod (the other cart pod and the web pod untouched), the shoppers of the web pod see no
/// errors, and everything is reverted at the end; the same experiment asking for two pods is refused by the cap
/// before anything is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_pods_experiment_runs_through_a_controller_and_an_agent() {
    if !skip::require("containerd", containerd::available().and_then(|()| skip::program("curl"))) {
        return;
    }
    let fixture = Containerd::start();
    let mut cri = cri::connect(&fixture.socket, Duration::from_secs(10)).await.unwrap();
    let pods_made = [
        run_pod(&mut cri, &fixture, "shop", "cart-1", "cart").await,
        run_pod(&mut cri, &fixture, "shop", "cart-2", "cart").await,
        run_pod(&mut cri, &fixture, "shop", "web-1", "web").await,
    ];
    let dir = TempDir::new("pods-e2e");
    let carts = pods(&fixture, "shop/app=cart");
    let web = &pods(&fixture, "shop/app=web")[0];
    let web_url = format!("http://{}:8080", web["ip"].as_str().unwrap());
    wait_until("the web pod answers the host", WAIT, || {
        Command::new("curl").args(["-sf", "-m", "2", "-o", "/dev/null", &web_url]).status().unwrap().success()
    });
    let fleet = Fleet::start(&fixture, dir.path());
    let example = support::repo_path("experiments/pods-partition.yaml");
    let var = format!("web={web_url}");

    let dry = support::output_within(
        fleet.client(&["run"]).arg(&example).args(["--var", &var, "--seed", "3", "--dry-run"]),
        WAIT,
    );
    let plan = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(dry.status.success(), "{}", support::describe_output(&dry));
    assert!(plan.contains("target cart: 1 pod (pods in shop with app=cart)"), "{plan}");
    let chosen = carts
        .iter()
        .find(|p| plan.contains(&format!("pod shop/{} on agent node-1", p["name"].as_str().unwrap())))
        .unwrap_or_else(|| panic!("no cart pod in the plan:\n{plan}"));
    let other = carts.iter().find(|p| p["name"] != chosen["name"]).unwrap();
    let container = &chosen["containers"][0];
    for shown in [container["cgroup"].as_str().unwrap(), chosen["netns"].as_str().unwrap()] {
        assert!(plan.contains(shown), "{shown} not in the plan:\n{plan}");
    }
    assert!(plan.contains(&format!("pid {}", container["pid"])), "{plan}");
    assert!(plan.contains("network-partition") && plan.contains("process-pause"), "{plan}");
    assert!(plan.contains("/tmp in the container's root filesystem"), "{plan}");

    // Two pods: above the controller's cap, refused before anything changes.
    let both = dir.path().join("both-carts.yaml");
    let text = std::fs::read_to_string(&example).unwrap();
    let text = text.replace("labels: { app: cart } }, count: 1 }", "labels: { app: cart } }, count: 2 }");
    std::fs::write(&both, text).unwrap();
    let refused = support::output_within(fleet.client(&["run"]).arg(&both).args(["--var", &var]), WAIT);
    assert_eq!(refused.status.code(), Some(3), "{}", support::describe_output(&refused));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("would touch 2 pods") && why.contains("cap of 1 per run"), "{why}");
    for cart in &carts {
        assert!(
            nft_tables(cart["netns"].as_str().unwrap(), "chaos").is_empty(),
            "the refused run touched a pod"
        );
    }

    let journal = dir.path().join("journal.json");
    let run = fleet
        .client(&["run"])
        .arg(&example)
        .args(["--var", &var, "--seed", "3", "--journal"])
        .arg(&journal)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (chosen_ns, other_ns, web_ns) = (
        chosen["netns"].as_str().unwrap().to_string(),
        other["netns"].as_str().unwrap().to_string(),
        web["netns"].as_str().unwrap().to_string(),
    );
    wait_until("the chosen cart pod partitioned", WAIT, || nft_tables(&chosen_ns, "chaos").len() == 1);
    assert!(nft_tables(&other_ns, "chaos").is_empty(), "the other cart pod was partitioned too");
    assert!(nft_tables(&web_ns, "chaos").is_empty(), "the web pod was partitioned");
    let (chosen_pid, other_pid) =
        (container["pid"].as_i64().unwrap() as i32, other["containers"][0]["pid"].as_i64().unwrap() as i32);
    wait_until("the chosen cart pod frozen", WAIT, || process_state(chosen_pid) == Some('T'));
    assert!(nft_tables(&chosen_ns, "chaos").is_empty(), "the partition outlived its step");
    assert_ne!(process_state(other_pid), Some('T'), "the other cart pod was frozen too");
    // The fill lands in the chosen pod's own /tmp (its root filesystem), not the other's, not the node's.
    let tmp_of = |pid: i32| std::path::PathBuf::from(format!("/proc/{pid}/root/tmp"));
    wait_until("the chosen cart pod's /tmp filled", WAIT, || fill_files(&tmp_of(chosen_pid)).len() == 1);
    assert!(fill_files(&tmp_of(other_pid)).is_empty(), "the other cart pod was filled too");
    assert!(fill_files(std::path::Path::new("/tmp")).is_empty(), "the node's /tmp was filled");
    let out = support::wait_within(run, Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(0), "{}", support::describe_output(&out));
    assert_ne!(process_state(chosen_pid), Some('T'), "the cart pod is still frozen after the run");
    assert!(fill_files(&tmp_of(chosen_pid)).is_empty(), "the fill outlived the run");
    let journal: Value = serde_json::from_str(&std::fs::read_to_string(&journal).unwrap()).unwrap();
    assert_eq!(journal["verdict"], "passed", "{journal:#}");

    drop(fleet);
    for pod in &pods_made {
        remove_pod(&mut cri, pod).await;
    }
}
