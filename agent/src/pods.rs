//! Pods as targets, found through the node's container runtime (the Kubernetes Container Runtime Interface on
//! containerd's or CRI-O's socket): no Kubernetes API access is needed on the node.
//!
//! [`find`] lists the ready pod sandboxes of a namespace whose labels (the kubelet copies a pod's labels onto
//! its sandbox) match a selector, their running containers (optionally one by name), each container's task
//! pid and cgroup, and the pod's network namespace. [`in_pod`] turns a host fault into the same fault inside
//! one container of one pod:
//!
//! - `process-kill` / `process-pause`: the target selector gains the container's cgroup (with no other
//!   criterion, every process of the container matches), so only its processes are chosen;
//! - network faults: the pod's network namespace (`/run/netns/cni-…`, as CNI names it) instead of the node's;
//! - CPU, memory and IO stress: workers that join the container's cgroup (every hierarchy it has) as their
//!   first step ([`crate::stress::Placement`]), so the container's own CPU, memory and IO limits apply to them;
//! - disk fill: `path` is the container's: under one of its volumes, the volume's node path (beneath which the
//!   fill must stay; a read-only volume is refused); anywhere else, the container's root filesystem through
//!   its task's `/proc/PID/root` ([`crate::stress::FillRoot`]).
//!
//! What is applied is then the ordinary host fault, with its lease, undo record and watchdog: a pod that
//! disappears while faulted takes its namespace and processes with it (a revert finds them gone and is not an
//! error), and a pod recreated under the same name has a new sandbox, new pids (start times differ) and a new
//! namespace, so a stale record never touches it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use chaos_proto::cri::{self, v1};
use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::spec::FaultSpec;

/// How long a CRI call may take (connecting included).
const CRI_TIMEOUT: Duration = Duration::from_secs(10);
/// The most pods and containers one lookup reads: a node runs at most a few hundred.
const MAX_PODS: usize = 1_000;
/// Where `ip netns` (and CNI) keep named network namespaces.
const NETNS_DIRS: [&str; 2] = ["/run/netns", "/var/run/netns"];

/// Which pods: a namespace, labels that must all match, and optionally one container by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSelector {
    pub namespace: String,
    /// Every label given must be on the pod with this value; none selects every pod of the namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The container by name; absent, every running container of each pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// A pod on this node, as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The pod sandbox's id in the runtime: a recreated pod has a new one.
    pub sandbox_id: String,
    pub labels: BTreeMap<String, String>,
    pub ip: String,
    /// The pod's network namespace by name (under `/run/netns`); `None` for a pod on the node's network.
    pub netns: Option<String>,
    pub containers: Vec<PodContainer>,
}

/// A running container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodContainer {
    pub name: String,
    pub id: String,
    /// The container's task (its first process) on this node.
    pub pid: i32,
    /// The task's cgroup path (`/k8s.io/ID`, `/kubepods/…/ID`), as `/proc/PID/cgroup` shows it.
    pub cgroup: String,
    /// The container's volumes as the runtime reports them (a disk fill under one writes to its node path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<PodMount>,
}

/// A volume of a container: where the container sees it and where it is on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodMount {
    pub container_path: PathBuf,
    pub host_path: PathBuf,
    pub readonly: bool,
}

impl fmt::Display for PodSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        write!(f, "pods in {}", self.namespace)?;
        if !labels.is_empty() {
            write!(f, " with {}", labels.join(","))?;
        }
        if let Some(container) = &self.container {
            write!(f, ", container {container}")?;
        }
        Ok(())
    }
}

impl PodSelector {
    /// Parses `NAMESPACE[/KEY=VALUE,…]` (the CLI's `--pod`): `shop/app=cart,tier=web`.
    pub fn parse(text: &str, container: Option<String>) -> Result<PodSelector, AgentError> {
        let invalid = |reason: String| AgentError::Invalid { what: "pod selector", reason };
        let (namespace, labels) = text.split_once('/').unwrap_or((text, ""));
        let mut selector =
            PodSelector { namespace: namespace.to_string(), labels: BTreeMap::new(), container };
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid(format!("expected KEY=VALUE in '{text}', found '{pair}'")))?;
            selector.labels.insert(key.to_string(), value.to_string());
        }
        selector.validate()?;
        Ok(selector)
    }

    /// A namespace and label keys Kubernetes could have made; a container name likewise.
    pub fn validate(&self) -> Result<(), AgentError> {
        let invalid = |reason: String| AgentError::Invalid { what: "pod selector", reason };
        let dns_label = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !s.starts_with('-')
                && !s.ends_with('-')
        };
        if !dns_label(&self.namespace) {
            return Err(invalid(format!(
                "expected a namespace of 1 to 63 lowercase letters, digits and '-', found '{}'",
                self.namespace
            )));
        }
        for (key, value) in &self.labels {
            if key.is_empty() || key.len() > 317 || value.len() > 63 {
                return Err(invalid(format!("label {key}={value} is longer than Kubernetes allows")));
            }
        }
        if let Some(c) = &self.container
            && !dns_label(c)
        {
            return Err(invalid(format!("expected a container name like a DNS label, found '{c}'")));
        }
        Ok(())
    }
}

/// The CRI runtime on `socket`: its name and version (`containerd 1.6.20`), proving it answers.
pub async fn runtime_version(socket: &Path) -> Result<String, AgentError> {
    let mut client = connect(socket).await?;
    let version = client
        .version(v1::VersionRequest { version: "v1".into() })
        .await
        .map_err(|e| cri_error(socket, "Version", &e))?
        .into_inner();
    Ok(format!("{} {} (CRI {})", version.runtime_name, version.runtime_version, version.runtime_api_version))
}

/// The ready pods on this node that `selector` matches, each with its matching running containers (pods with
/// none are left out), sorted by name.
pub async fn find(socket: &Path, selector: &PodSelector) -> Result<Vec<Pod>, AgentError> {
    find_in(socket, selector, None).await
}

/// [`find`], limited to the sandbox `sandbox_id` when given (the runtime filters by id, so applying a fault to
/// one chosen pod reads that pod only, not its whole namespace).
async fn find_in(
    socket: &Path,
    selector: &PodSelector,
    sandbox_id: Option<&str>,
) -> Result<Vec<Pod>, AgentError> {
    selector.validate()?;
    let mut client = connect(socket).await?;
    let filter = v1::PodSandboxFilter {
        id: sandbox_id.unwrap_or_default().to_string(),
        state: Some(v1::PodSandboxStateValue { state: v1::PodSandboxState::SandboxReady as i32 }),
        label_selector: selector.labels.clone().into_iter().collect(),
    };
    let sandboxes = client
        .list_pod_sandbox(v1::ListPodSandboxRequest { filter: Some(filter) })
        .await
        .map_err(|e| cri_error(socket, "ListPodSandbox", &e))?
        .into_inner()
        .items;
    let mut pods = Vec::new();
    for sandbox in sandboxes.into_iter().take(MAX_PODS) {
        let Some(meta) = &sandbox.metadata else { continue };
        // The runtime filters on labels; the namespace is checked here (and the labels again: a runtime
        // that ignores the filter must not widen the selection).
        if meta.namespace != selector.namespace
            || sandbox_id.is_some_and(|id| id != sandbox.id)
            || !selector.labels.iter().all(|(k, v)| sandbox.labels.get(k) == Some(v))
        {
            continue;
        }
        let status = client
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.id.clone(),
                verbose: true,
            })
            .await
            .map_err(|e| cri_error(socket, "PodSandboxStatus", &e))?
            .into_inner();
        let netns = pod_netns(&status)?;
        let ip =
            status.status.as_ref().and_then(|s| s.network.as_ref()).map(|n| n.ip.clone()).unwrap_or_default();
        let filter = v1::ContainerFilter {
            pod_sandbox_id: sandbox.id.clone(),
            state: Some(v1::ContainerStateValue { state: v1::ContainerState::ContainerRunning as i32 }),
            ..Default::default()
        };
        let listed = client
            .list_containers(v1::ListContainersRequest { filter: Some(filter) })
            .await
            .map_err(|e| cri_error(socket, "ListContainers", &e))?
            .into_inner()
            .containers;
        let mut containers = Vec::new();
        for container in listed.into_iter().take(MAX_PODS) {
            let name = container.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
            if container.pod_sandbox_id != sandbox.id
                || selector.container.as_ref().is_some_and(|wanted| *wanted != name)
            {
                continue;
            }
            let status = client
                .container_status(v1::ContainerStatusRequest {
                    container_id: container.id.clone(),
                    verbose: true,
                })
                .await
                .map_err(|e| cri_error(socket, "ContainerStatus", &e))?
                .into_inner();
            let Some(pid) = info_pid(&status.info) else {
                return Err(AgentError::Invalid {
                    what: "container runtime",
                    reason: format!(
                        "ContainerStatus of {} ({}) says no pid: the runtime's verbose info is not one chaos reads",
                        name, container.id
                    ),
                });
            };
            // A container that exited between the listing and now is not a target.
            let Some(cgroup) = container_cgroup(pid)? else { continue };
            let mounts = status
                .status
                .as_ref()
                .map(|s| {
                    s.mounts
                        .iter()
                        .map(|m| PodMount {
                            container_path: PathBuf::from(&m.container_path),
                            host_path: PathBuf::from(&m.host_path),
                            readonly: m.readonly,
                        })
                        .collect()
                })
                .unwrap_or_default();
            containers.push(PodContainer { name, id: container.id, pid, cgroup, mounts });
        }
        if containers.is_empty() {
            continue;
        }
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        pods.push(Pod {
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            sandbox_id: sandbox.id.clone(),
            labels: sandbox.labels.into_iter().collect(),
            ip,
            netns,
            containers,
        });
    }
    pods.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.sandbox_id.cmp(&b.sandbox_id)));
    Ok(pods)
}

/// The pod and container `pod` names, as the runtime reports them now: refused when the pod is gone, when its
/// sandbox is another one (recreated since it was chosen), or when the container is not running.
pub async fn resolve(
    socket: &Path,
    pod: &chaos_proto::v1::PodRef,
) -> Result<(Pod, PodContainer), AgentError> {
    let selector = PodSelector {
        namespace: pod.namespace.clone(),
        labels: BTreeMap::new(),
        container: Some(pod.container.clone()),
    };
    let gone = |why: &str| AgentError::Invalid {
        what: "pod",
        reason: format!("{}/{} (sandbox {}): {why}", pod.namespace, pod.name, pod.sandbox_id),
    };
    let found = find_in(socket, &selector, Some(&pod.sandbox_id)).await?;
    let Some(found) = found.into_iter().find(|p| p.name == pod.name) else {
        // Only on this path is the namespace read whole, to say why.
        let now = find(socket, &selector).await?;
        return Err(match now.into_iter().find(|p| p.name == pod.name) {
            Some(p) => gone(&format!("the pod was recreated (its sandbox is now {})", p.sandbox_id)),
            None => gone("no such ready pod on this node"),
        });
    };
    let Some(container) = found.containers.iter().find(|c| c.name == pod.container).cloned() else {
        return Err(gone(&format!("container {} is not running", pod.container)));
    };
    Ok((found, container))
}

/// A found pod as the agent protocol carries it.
pub fn to_proto(pod: &Pod) -> chaos_proto::v1::PodInfo {
    chaos_proto::v1::PodInfo {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        uid: pod.uid.clone(),
        sandbox_id: pod.sandbox_id.clone(),
        ip: pod.ip.clone(),
        netns: pod.netns.clone().unwrap_or_default(),
        containers: pod
            .containers
            .iter()
            .map(|c| chaos_proto::v1::PodContainer {
                name: c.name.clone(),
                id: c.id.clone(),
                pid: c.pid,
                cgroup: c.cgroup.clone(),
            })
            .collect(),
    }
}

/// `spec` inside `container` of `pod`: see the module's documentation. Refused for a network fault on a pod
/// that uses the node's network, for a spec that already names a network namespace or a cgroup of its own,
/// and for a disk fill of a read-only volume or outside the container's absolute paths.
pub fn in_pod(spec: &FaultSpec, pod: &Pod, container: &PodContainer) -> Result<FaultSpec, AgentError> {
    let refuse = |reason: String| AgentError::Invalid { what: "pod fault", reason };
    let netns = || match &pod.netns {
        Some(ns) => Ok(Some(ns.clone())),
        None => Err(refuse(format!(
            "pod {}/{} uses the node's network: a network fault there would hit the node",
            pod.namespace, pod.name
        ))),
    };
    let mut spec = spec.clone();
    match &mut spec {
        FaultSpec::ProcessKill { target, .. } | FaultSpec::ProcessPause { target, .. } => {
            if target.cgroup.is_some() {
                return Err(refuse("a pod fault's target must not name a cgroup: the pod's is used".into()));
            }
            target.cgroup = Some(container.cgroup.clone());
        }
        FaultSpec::NetworkPartition(s) => set_netns(&mut s.netns, netns()?)?,
        FaultSpec::NetworkLoss(s) => set_netns(&mut s.netns, netns()?)?,
        FaultSpec::NetworkBandwidth(s) => set_netns(&mut s.netns, netns()?)?,
        FaultSpec::NetworkLatency(s) => set_netns(&mut s.netns, netns()?)?,
        FaultSpec::CpuStress(_) | FaultSpec::MemoryStress(_) | FaultSpec::IoStress(_) => {}
        FaultSpec::DiskFill(fill) => fill_in(fill, container)?,
    }
    Ok(spec)
}

/// Points a disk fill at `container`'s filesystem: the node path of the volume `fill.path` lies under (the
/// innermost), or the container's root.
fn fill_in(fill: &mut crate::stress::DiskFill, container: &PodContainer) -> Result<(), AgentError> {
    use crate::stress::FillRoot;
    let refuse = |reason: String| AgentError::Invalid { what: "pod fault", reason };
    if fill.within.is_some() {
        return Err(refuse("a disk fill is confined to one pod only once".into()));
    }
    let inside = fill.path.clone();
    let plain = inside.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !inside.is_absolute() || !plain {
        return Err(refuse(format!(
            "a disk fill in a pod needs an absolute path inside the container without `..`, found {}",
            inside.display()
        )));
    }
    let volume = container
        .mounts
        .iter()
        .filter(|m| inside.starts_with(&m.container_path) && m.host_path.is_absolute())
        .max_by_key(|m| m.container_path.components().count());
    fill.within = Some(match volume {
        Some(m) if m.readonly => {
            return Err(refuse(format!(
                "{} is on a read-only volume of container {} ({})",
                inside.display(),
                container.name,
                m.container_path.display()
            )));
        }
        // Through the volume's node path where this agent sees it (in a pod: the kubelet's pods directory
        // mounted), so the record outlives the container; else through the container's root, where the apply
        // refuses a directory off the container's root filesystem.
        Some(m) if m.host_path.is_dir() => {
            let rest = inside.strip_prefix(&m.container_path).unwrap_or(Path::new(""));
            fill.path = m.host_path.join(rest);
            FillRoot::Volume {
                host_root: m.host_path.clone(),
                container_path: inside,
                task: container_task(container)?,
            }
        }
        Some(_) | None => FillRoot::Container { task: container_task(container)? },
    });
    Ok(())
}

/// The container's task by identity (pid and start time), once its pid is checked to still be in the
/// container's cgroup: a pid reused since the runtime reported it is refused.
fn container_task(container: &PodContainer) -> Result<crate::process::ProcessId, AgentError> {
    let task = crate::process::ProcessId::of(container.pid)?;
    match container_cgroup(container.pid)? {
        Some(cgroup) if cgroup == container.cgroup => Ok(task),
        _ => Err(AgentError::Invalid {
            what: "pod fault",
            reason: format!(
                "pid {} is no longer container {}'s task (it exited or was reused): try again",
                container.pid, container.name
            ),
        }),
    }
}

fn set_netns(field: &mut Option<String>, netns: Option<String>) -> Result<(), AgentError> {
    if field.is_some() {
        return Err(AgentError::Invalid {
            what: "pod fault",
            reason: "a pod fault must not name a netns: the pod's is used".into(),
        });
    }
    *field = netns;
    Ok(())
}

async fn connect(socket: &Path) -> Result<cri::RuntimeServiceClient<tonic::transport::Channel>, AgentError> {
    cri::connect(socket, CRI_TIMEOUT).await.map_err(|e| AgentError::Invalid {
        what: "container runtime",
        reason: format!("{e} (is the runtime's CRI socket at {}? see --cri-socket)", socket.display()),
    })
}

fn cri_error(socket: &Path, call: &str, status: &tonic::Status) -> AgentError {
    AgentError::Invalid {
        what: "container runtime",
        reason: format!("CRI {call} on {}: {}: {}", socket.display(), status.code(), status.message()),
    }
}

/// The pid in a verbose status's `info` (containerd and CRI-O both put JSON with `pid` under `info`).
fn info_pid(info: &std::collections::HashMap<String, String>) -> Option<i32> {
    let json: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    json.get("pid")?.as_i64().and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0)
}

/// The pod's network namespace by name: from the runtime spec in the sandbox's verbose info (the `network`
/// namespace's path, which CNI puts under `/run/netns`). `None` when the pod shares the node's network.
fn pod_netns(status: &v1::PodSandboxStatusResponse) -> Result<Option<String>, AgentError> {
    let node_network = status
        .status
        .as_ref()
        .and_then(|s| s.linux.as_ref())
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .is_some_and(|o| o.network == v1::NamespaceMode::Node as i32);
    if node_network {
        return Ok(None);
    }
    let json: Option<serde_json::Value> = status.info.get("info").and_then(|i| serde_json::from_str(i).ok());
    let path = json.as_ref().and_then(|j| j.pointer("/runtimeSpec/linux/namespaces")).and_then(|ns| {
        ns.as_array()?
            .iter()
            .find(|n| n["type"] == "network")
            .and_then(|n| n["path"].as_str().map(str::to_string))
    });
    let id = status.status.as_ref().map(|s| s.id.as_str()).unwrap_or_default();
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return Err(AgentError::Invalid {
            what: "container runtime",
            reason: format!("pod sandbox {id}: its verbose info names no network namespace path"),
        });
    };
    let path = Path::new(&path);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match path.parent().and_then(Path::to_str) {
        Some(dir) if NETNS_DIRS.contains(&dir) && !name.is_empty() => Ok(Some(name.to_string())),
        _ => Err(AgentError::Invalid {
            what: "container runtime",
            reason: format!(
                "pod sandbox {id}: its network namespace {} is not under /run/netns, where `ip netns` can enter it",
                path.display()
            ),
        }),
    }
}

/// The cgroup path of `pid`: the unified hierarchy's on cgroup v2, else the `pids` (or first named
/// controller's) hierarchy's. `None` when the process has gone.
fn container_cgroup(pid: i32) -> Result<Option<String>, AgentError> {
    let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            return Ok(None);
        }
        Err(source) => return Err(AgentError::Proc { path, source }),
    };
    let lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?, parts.next()?))
        })
        .collect();
    let unified = lines.iter().find(|(controllers, _)| controllers.is_empty()).map(|(_, p)| *p);
    let v1 = lines
        .iter()
        .find(|(controllers, _)| controllers.split(',').any(|c| c == "pids"))
        .or_else(|| lines.iter().find(|(controllers, _)| !controllers.is_empty()))
        .map(|(_, p)| *p);
    // On a hybrid host the unified line is `/` (unused); the v1 controllers say where the container is.
    let chosen = match (v1, unified) {
        (Some(p), _) if p != "/" => Some(p),
        (_, Some(p)) => Some(p),
        (v1, None) => v1,
    };
    Ok(chosen.map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cli_selector_parses_and_bad_ones_are_refused_with_why() {
        let s = PodSelector::parse("shop/app=cart,tier=web", Some("cart".into())).unwrap();
        assert_eq!(s.namespace, "shop");
        assert_eq!(s.labels.get("app").map(String::as_str), Some("cart"));
        assert_eq!(s.to_string(), "pods in shop with app=cart,tier=web, container cart");
        assert!(PodSelector::parse("shop", None).unwrap().labels.is_empty());
        for (bad, why) in [("Shop/app=x", "namespace"), ("shop/app", "KEY=VALUE"), ("", "namespace")] {
            let e = PodSelector::parse(bad, None).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = PodSelector::parse("shop", Some("Bad_Name".into())).unwrap_err().to_string();
        assert!(e.contains("container name"), "{e}");
    }

    #[test]
    fn verbose_info_gives_the_pid_and_the_netns_name() {
        let info = |json: &str| [("info".to_string(), json.to_string())].into_iter().collect();
        assert_eq!(info_pid(&info(r#"{"pid": 4242, "sandboxID": "x"}"#)), Some(4242));
        assert_eq!(info_pid(&info(r#"{"pid": 0}"#)), None);
        assert_eq!(info_pid(&info("not json")), None);
        let status = |path: &str| v1::PodSandboxStatusResponse {
            status: Some(v1::PodSandboxStatus { id: "sb".into(), ..Default::default() }),
            info: info(&format!(
                r#"{{"pid": 7, "runtimeSpec": {{"linux": {{"namespaces": [{{"type": "pid"}}, {{"type": "network", "path": "{path}"}}]}}}}}}"#
            )),
        };
        assert_eq!(pod_netns(&status("/var/run/netns/cni-1234")).unwrap().as_deref(), Some("cni-1234"));
        assert_eq!(pod_netns(&status("/run/netns/cni-9")).unwrap().as_deref(), Some("cni-9"));
        let e = pod_netns(&status("/proc/7/ns/net")).unwrap_err().to_string();
        assert!(e.contains("not under /run/netns"), "{e}");
    }

    /// Pod shop/cart-1 with no containers listed, in network namespace `netns`.
    fn test_pod(netns: Option<&str>) -> Pod {
        Pod {
            namespace: "shop".into(),
            name: "cart-1".into(),
            uid: "u".into(),
            sandbox_id: "sb".into(),
            labels: BTreeMap::new(),
            ip: "10.88.0.2".into(),
            netns: netns.map(str::to_string),
            containers: vec![],
        }
    }

    #[test]
    fn a_spec_in_a_pod_is_confined_to_its_container() {
        let pod = test_pod(Some("cni-1"));
        let container = PodContainer {
            name: "cart".into(),
            id: "c".into(),
            pid: 9,
            cgroup: "/k8s.io/c".into(),
            mounts: Vec::new(),
        };
        let spec = |yaml: &str| -> FaultSpec { serde_saphyr::from_str(yaml).unwrap() };
        match in_pod(&spec("kind: process-pause\ntarget: { name: sleep }\n"), &pod, &container).unwrap() {
            FaultSpec::ProcessPause { target, .. } => {
                assert_eq!(
                    (target.name.as_deref(), target.cgroup.as_deref()),
                    (Some("sleep"), Some("/k8s.io/c"))
                );
            }
            other => panic!("{other:?}"),
        }
        match in_pod(&spec("kind: network-partition\n"), &pod, &container).unwrap() {
            FaultSpec::NetworkPartition(p) => assert_eq!(p.netns.as_deref(), Some("cni-1")),
            other => panic!("{other:?}"),
        }
        let e = in_pod(&spec("kind: network-partition\nnetns: other\n"), &pod, &container).unwrap_err();
        assert!(e.to_string().contains("must not name a netns"), "{e}");
        let host_network = Pod { netns: None, ..pod.clone() };
        let e = in_pod(&spec("kind: network-partition\n"), &host_network, &container).unwrap_err();
        assert!(e.to_string().contains("node's network"), "{e}");
    }

    #[test]
    fn a_disk_fill_in_a_pod_goes_to_the_volume_it_names_or_the_containers_root() {
        use crate::stress::FillRoot;
        let dir = chaos_test_support::TempDir::new("pods-fill-unit");
        let volume = dir.path().join("volume");
        std::fs::create_dir(&volume).unwrap();
        let pod = test_pod(None);
        let mount = |inside: &str, node: &str, readonly: bool| PodMount {
            container_path: inside.into(),
            host_path: node.into(),
            readonly,
        };
        let container = PodContainer {
            name: "cart".into(),
            id: "c".into(),
            pid: std::process::id() as i32,
            cgroup: container_cgroup(std::process::id() as i32).unwrap().unwrap(),
            mounts: vec![
                mount("/data", &volume.display().to_string(), false),
                mount("/unseen", "/nonexistent/kubelet/volume", false),
                mount("/data/ro", "/srv/ro", true),
                mount("/etc/hosts", "/var/lib/kubelet/pods/u/etc-hosts", false),
            ],
        };
        let fill = |path: &str| -> Result<crate::stress::DiskFill, AgentError> {
            let spec: FaultSpec =
                serde_saphyr::from_str(&format!("kind: disk-fill\npath: {path}\nsize: 1MiB\n")).unwrap();
            match in_pod(&spec, &pod, &container)? {
                FaultSpec::DiskFill(fill) => Ok(fill),
                other => panic!("{other:?}"),
            }
        };
        let filled = fill("/data/cache").unwrap();
        assert_eq!(filled.path, volume.join("cache"));
        assert_eq!(
            filled.within,
            Some(FillRoot::Volume {
                host_root: volume.clone(),
                container_path: "/data/cache".into(),
                task: crate::process::ProcessId::of(container.pid).unwrap()
            })
        );
        // A volume whose node path this agent does not see is reached through the container's root.
        let unseen = fill("/unseen/x").unwrap();
        assert_eq!(unseen.path, Path::new("/unseen/x"));
        assert!(matches!(unseen.within, Some(FillRoot::Container { .. })));
        // `/database` is not under `/data`: the container's root, through its task.
        let root = fill("/database").unwrap();
        assert_eq!(root.path, Path::new("/database"));
        assert!(matches!(root.within, Some(FillRoot::Container { task }) if task.pid == container.pid));
        assert!(root.location().contains("root filesystem"), "{}", root.location());
        let e = fill("/data/ro/x").unwrap_err().to_string();
        assert!(e.contains("read-only volume of container cart (/data/ro)"), "{e}");
        for bad in ["tmp", "/data/../etc"] {
            let e = fill(bad).unwrap_err().to_string();
            assert!(e.contains("absolute path inside the container without `..`"), "{bad}: {e}");
        }
    }
}
