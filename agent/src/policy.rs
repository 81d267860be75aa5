//! [`AgentPolicy`]: the host owner's limits on what any fault may do here, read from a policy file.
//!
//! ```yaml
//! allowed_faults: [process-pause, cpu-stress, network-partition]   # default: every kind
//! max_duration: 30m                                                 # longest lease; default 1h
//! processes:
//!   protected_names: [sshd, systemd, init, postgres]                # default: sshd, systemd, init
//!   protected_cmdlines: ['(^|/)chaos (controller|agent)( |$)']      # the default
//!   allow_cmdlines: ['^/srv/shop/']                                 # empty (the default): any
//!   deny_cmdlines: ['--prod']
//!   max_count: 5
//!   pidfile_dirs: [/run, /var/run, /tmp, /var/tmp]                  # where pidfile targets may be read; the default
//! stress:
//!   max_cpu_workers: 8          # default: 4 × CPUs
//!   max_cpu_load: 90            # percent per worker; default 100
//!   max_memory: 50%             # of MemTotal, or bytes like 2GiB; default 80%
//!   max_disk_fill: 10GiB        # bytes, or percent of the free space; default 95%
//!   fill_paths: [/tmp, /var/tmp]  # where disk fill and IO stress may write; the default
//!   max_io_workers: 4           # default 16
//! pods:                         # pod targets (through the node's container runtime)
//!   protected_namespaces: [kube-system]   # never targeted; the default
//!   allowed_namespaces: [shop, staging]   # empty (the default): any namespace not protected
//!   volume_paths: [/var/lib/kubelet/pods] # pod volumes a disk fill may reach (and those under fill_paths)
//! probe_commands:               # command probes the controller may run here; default: none
//!   - [/usr/bin/systemctl, is-active]   # an argv prefix: `systemctl is-active nginx` is allowed
//!   - [/usr/bin/test, -f, /srv/shop/ready]
//! ```
//!
//! PID 1, the agent itself and its ancestors, and kernel threads are refused whatever the file says. Every
//! refusal names the rule (`policy rule 'max-memory' refused: ...`) and comes before anything changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::faults::FaultKind;
use crate::process::Policy as ProcessPolicy;
use crate::spec::FaultSpec;
use crate::stress::Size;

/// Limits on every fault this agent applies. `Default` is what an agent without a policy file enforces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentPolicy {
    /// Kinds that may be applied (`process-kill`, `cpu-stress`, ...); `None`: all.
    #[serde(deserialize_with = "checked::fault_kinds")]
    pub allowed_faults: Option<Vec<String>>,
    /// The longest lease (fault duration) accepted, like `30m`, `90s`, `1h`.
    #[serde(deserialize_with = "checked::duration")]
    pub max_duration: String,
    pub processes: ProcessRules,
    pub stress: StressLimits,
    pub pods: PodRules,
    /// Command probes a controller may run on this host (`command: { run: [...], agent: ID }`), each an argv
    /// prefix whose program is an absolute path: a probe runs only if its argv starts with one of them. Empty
    /// (the default): none, so a controller cannot run programs here unless the host owner says which.
    #[serde(deserialize_with = "checked::probe_commands")]
    pub probe_commands: Vec<Vec<String>>,
}

/// The process rules: names and command lines never targeted, allow and deny lists, how many at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessRules {
    pub protected_names: Vec<String>,
    #[serde(deserialize_with = "checked::protected_cmdlines")]
    pub protected_cmdlines: Vec<String>,
    #[serde(deserialize_with = "checked::allow_cmdlines")]
    pub allow_cmdlines: Vec<String>,
    #[serde(deserialize_with = "checked::deny_cmdlines")]
    pub deny_cmdlines: Vec<String>,
    pub max_count: Option<usize>,
    /// Directories (and everything under them) a `pidfile` target may be read from.
    pub pidfile_dirs: Vec<PathBuf>,
}

/// Ceilings for resource faults, and where they may write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StressLimits {
    /// Default: four workers per CPU.
    pub max_cpu_workers: Option<u32>,
    #[serde(deserialize_with = "checked::cpu_load")]
    pub max_cpu_load: u8,
    /// Bytes, or a percentage of MemTotal.
    pub max_memory: Size,
    /// Bytes, or a percentage of the free space where the file goes.
    pub max_disk_fill: Size,
    /// Directories (and everything under them) where disk fill and IO stress may create files.
    pub fill_paths: Vec<PathBuf>,
    pub max_io_workers: u32,
}

/// Which Kubernetes namespaces pod faults may reach, and which pod volumes a disk fill may.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PodRules {
    /// Never targeted, whatever `allowed_namespaces` says. Default: `kube-system`.
    pub protected_namespaces: Vec<String>,
    /// When not empty, the only namespaces a pod fault may reach.
    pub allowed_namespaces: Vec<String>,
    /// Where the node paths of the pod volumes a disk fill may reach lie (besides `stress.fill_paths`): the
    /// kubelet's volumes. A pod's hostPath volume elsewhere is the node's own disk, under `fill_paths` or not
    /// at all. Default: `/var/lib/kubelet/pods`.
    pub volume_paths: Vec<PathBuf>,
}

impl Default for PodRules {
    fn default() -> Self {
        PodRules {
            protected_namespaces: vec!["kube-system".into()],
            allowed_namespaces: Vec::new(),
            volume_paths: vec![PathBuf::from("/var/lib/kubelet/pods")],
        }
    }
}

// === impl AgentPolicy ===

impl Default for AgentPolicy {
    fn default() -> Self {
        AgentPolicy {
            allowed_faults: None,
            max_duration: "1h".into(),
            processes: ProcessRules::default(),
            stress: StressLimits::default(),
            pods: PodRules::default(),
            probe_commands: Vec::new(),
        }
    }
}

impl AgentPolicy {
    /// Reads a policy file (YAML or JSON); errors carry the file, line and column, and every rule is checked.
    pub fn load(path: &Path) -> Result<AgentPolicy, AgentError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AgentError::io(format!("reading policy file {}", path.display()), e))?;
        let policy: AgentPolicy = serde_saphyr::from_str(&text)
            .map_err(|e| AgentError::invalid("policy file", format!("{}: {e}", path.display())))?;
        policy
            .validate()
            .map_err(|e| AgentError::invalid("policy file", format!("{}: {e}", path.display())))?;
        Ok(policy)
    }

    /// Checks the policy itself: known fault kinds, a duration that parses, patterns that compile.
    pub fn validate(&self) -> Result<(), AgentError> {
        if let Some(kinds) = &self.allowed_faults {
            for kind in kinds {
                FaultKind::parse(kind)?;
            }
        }
        self.max_duration()?;
        for (index, prefix) in self.probe_commands.iter().enumerate() {
            check_probe_prefix(index, prefix)?;
        }
        self.process_policy().validate()?;
        // Resolved against nothing but the root: a relative entry would depend on the agent's working directory.
        for (index, path) in self.pods.volume_paths.iter().enumerate() {
            let plain = path
                .components()
                .all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)));
            if !path.is_absolute() || !plain {
                return Err(AgentError::invalid(
                    "pods.volume_paths",
                    format!(
                        "entry {index}: expected an absolute path without `..`, found {}",
                        path.display()
                    ),
                ));
            }
        }
        check_cpu_load(self.stress.max_cpu_load)
    }

    /// The longest lease accepted.
    pub fn max_duration(&self) -> Result<Duration, AgentError> {
        check_duration(&self.max_duration)
    }

    /// The process part as the selection code takes it.
    pub fn process_policy(&self) -> ProcessPolicy {
        let rules = &self.processes;
        ProcessPolicy {
            protected_names: rules.protected_names.clone(),
            protected_cmdlines: rules.protected_cmdlines.clone(),
            allow_cmdlines: rules.allow_cmdlines.clone(),
            deny_cmdlines: rules.deny_cmdlines.clone(),
            max_count: rules.max_count,
            pidfile_dirs: rules.pidfile_dirs.clone(),
        }
    }

    /// Refuses a fault in a pod of `namespace` when the namespace is protected or not among the allowed ones.
    pub fn check_pod_namespace(&self, namespace: &str) -> Result<(), AgentError> {
        let rules = &self.pods;
        if rules.protected_namespaces.iter().any(|n| n == namespace) {
            return Err(forbid(
                "protected-namespaces",
                format!("namespace {namespace} is protected ({})", rules.protected_namespaces.join(", ")),
            ));
        }
        if !rules.allowed_namespaces.is_empty() && !rules.allowed_namespaces.iter().any(|n| n == namespace) {
            return Err(forbid(
                "allowed-namespaces",
                format!(
                    "namespace {namespace} is not in the allowed namespaces ({})",
                    rules.allowed_namespaces.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Refuses `spec` held for `duration` if a rule forbids it. Process targets are checked when they are
    /// selected (see [`process::select`]); this checks the kind, the duration and the resource ceilings.
    pub fn check(&self, spec: &FaultSpec, duration: Option<Duration>) -> Result<(), AgentError> {
        let kind = spec.kind();
        if let Some(allowed) = &self.allowed_faults
            && !allowed.iter().any(|k| k == kind.as_str())
        {
            return Err(forbid(
                "allowed-faults",
                format!("{kind} is not in the allowed faults ({})", allowed.join(", ")),
            ));
        }
        if let Some(duration) = duration {
            self.check_duration(kind, duration)?;
        }
        let limits = &self.stress;
        match spec {
            FaultSpec::CpuStress(cpu) => {
                let workers = cpu.effective_workers();
                let max = limits.max_cpu_workers.unwrap_or_else(|| 4 * cpus());
                if workers > max {
                    return Err(forbid(
                        "max-cpu-workers",
                        format!("{workers} workers asked, at most {max} allowed"),
                    ));
                }
                if cpu.load > limits.max_cpu_load {
                    return Err(forbid(
                        "max-cpu-load",
                        format!("load {}% asked, at most {}% allowed", cpu.load, limits.max_cpu_load),
                    ));
                }
            }
            FaultSpec::MemoryStress(memory) => {
                let asked = memory.bytes()?;
                let max = limits.max_memory.of(memory_total()?);
                if asked > max {
                    return Err(forbid(
                        "max-memory",
                        format!(
                            "{asked} bytes asked, at most {max} allowed ({} of MemTotal)",
                            limits.max_memory
                        ),
                    ));
                }
            }
            FaultSpec::DiskFill(fill) => {
                // Inside a pod the pod rules chose the container, and the fill stays in its filesystem: a
                // volume's fill beneath the volume's node path (a symlink out of it is refused here).
                match &fill.within {
                    None => self.check_path(&fill.path)?,
                    Some(crate::stress::FillRoot::Volume { host_root, .. }) => {
                        let roots: Vec<PathBuf> =
                            self.pods.volume_paths.iter().chain(&limits.fill_paths).cloned().collect();
                        crate::beneath::Beneath::find(host_root, &roots, "volume-paths")?;
                        crate::beneath::Beneath::find(
                            &fill.path,
                            std::slice::from_ref(host_root),
                            "pod-volume",
                        )?;
                    }
                    Some(crate::stress::FillRoot::Container { .. }) => {}
                }
                let asked = fill.bytes()?;
                let max = limits.max_disk_fill.of(fill.free_space()?);
                if asked > max {
                    return Err(forbid(
                        "max-disk-fill",
                        format!(
                            "{asked} bytes asked, at most {max} allowed ({} of the free space)",
                            limits.max_disk_fill
                        ),
                    ));
                }
            }
            FaultSpec::IoStress(io) => {
                self.check_path(&io.path)?;
                // IO stress files take disk space too: the fill ceiling bounds them.
                let asked = io.total_bytes()?;
                let max = limits.max_disk_fill.of(crate::stress::free_space(&io.path)?);
                if asked > max {
                    return Err(forbid(
                        "max-disk-fill",
                        format!(
                            "io-stress files take {asked} bytes, at most {max} allowed ({} of the free space)",
                            limits.max_disk_fill
                        ),
                    ));
                }
                if io.workers > limits.max_io_workers {
                    return Err(forbid(
                        "max-io-workers",
                        format!("{} workers asked, at most {} allowed", io.workers, limits.max_io_workers),
                    ));
                }
            }
            FaultSpec::ProcessKill { .. }
            | FaultSpec::ProcessPause { .. }
            | FaultSpec::NetworkPartition(_)
            | FaultSpec::NetworkLoss(_)
            | FaultSpec::NetworkBandwidth(_)
            | FaultSpec::NetworkLatency(_) => {}
        }
        Ok(())
    }

    /// Refuses holding a fault of `kind` for `duration` (a lease, or its renewal) above `max_duration`.
    /// Refuses a command probe whose argv starts with none of the `probe_commands` prefixes (rule
    /// `probe-commands`).
    pub fn check_probe(&self, argv: &[String]) -> Result<(), AgentError> {
        if argv.is_empty() {
            return Err(AgentError::invalid("probe", "expected a program and its arguments, found none"));
        }
        if self.probe_commands.iter().any(|prefix| argv.starts_with(prefix)) {
            return Ok(());
        }
        let shown = argv.join(" ");
        let why = if self.probe_commands.is_empty() {
            "this agent's policy allows no probe command (`probe_commands` is empty)".to_string()
        } else {
            let allowed: Vec<String> =
                self.probe_commands.iter().map(|p| format!("[{}]", p.join(" "))).collect();
            format!("it starts with none of the allowed probe commands {}", allowed.join(", "))
        };
        Err(forbid("probe-commands", format!("`{shown}` may not run here: {why}")))
    }

    pub fn check_duration(&self, kind: FaultKind, duration: Duration) -> Result<(), AgentError> {
        let max = self.max_duration()?;
        if duration > max {
            return Err(forbid(
                "max-duration",
                format!("{kind} for {} is longer than the {} allowed", show(duration), self.max_duration),
            ));
        }
        Ok(())
    }

    /// Refuses a path outside every `fill_paths` entry (both resolved, so `..` and symlinks cannot escape).
    fn check_path(&self, path: &Path) -> Result<(), AgentError> {
        let real =
            path.canonicalize().map_err(|e| AgentError::io(format!("resolving {}", path.display()), e))?;
        let allowed =
            self.stress.fill_paths.iter().filter_map(|p| p.canonicalize().ok()).any(|p| real.starts_with(p));
        if allowed {
            return Ok(());
        }
        let list: Vec<String> = self.stress.fill_paths.iter().map(|p| p.display().to_string()).collect();
        Err(forbid(
            "fill-paths",
            format!("{} is not under any allowed path ({})", path.display(), list.join(", ")),
        ))
    }
}

impl Default for ProcessRules {
    fn default() -> Self {
        let defaults = ProcessPolicy::default();
        ProcessRules {
            protected_names: defaults.protected_names,
            protected_cmdlines: defaults.protected_cmdlines,
            allow_cmdlines: Vec::new(),
            deny_cmdlines: Vec::new(),
            max_count: None,
            pidfile_dirs: defaults.pidfile_dirs,
        }
    }
}

impl Default for StressLimits {
    fn default() -> Self {
        let mut fill_paths = vec![PathBuf::from("/tmp"), PathBuf::from("/var/tmp")];
        let temp = std::env::temp_dir();
        if !fill_paths.contains(&temp) {
            fill_paths.push(temp);
        }
        StressLimits {
            max_cpu_workers: None,
            max_cpu_load: 100,
            max_memory: Size::Percent(80.0),
            max_disk_fill: Size::Percent(95.0),
            fill_paths,
            max_io_workers: 16,
        }
    }
}

fn check_duration(text: &str) -> Result<Duration, AgentError> {
    parse_duration(text).ok_or_else(|| {
        AgentError::invalid("max_duration", format!("{text:?} is not a duration like 30m, 90s or 1h"))
    })
}

fn check_probe_prefix(index: usize, prefix: &[String]) -> Result<(), AgentError> {
    match prefix.first() {
        None => Err(AgentError::invalid(
            "probe_commands",
            format!("entry {index}: expected a program and optional arguments, found an empty list"),
        )),
        Some(program) if !program.starts_with('/') => Err(AgentError::invalid(
            "probe_commands",
            format!("entry {index}: the program must be an absolute path, found {program:?}"),
        )),
        Some(_) => Ok(()),
    }
}

fn check_cpu_load(load: u8) -> Result<(), AgentError> {
    if (1..=100).contains(&load) {
        Ok(())
    } else {
        Err(AgentError::invalid("max_cpu_load", format!("expected 1 to 100, found {load}")))
    }
}

fn forbid(rule: &str, detail: String) -> AgentError {
    AgentError::Forbidden { rule: rule.into(), detail }
}

fn cpus() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1)
}

fn memory_total() -> Result<u64, AgentError> {
    crate::stress::mem_total()
}

/// `250ms`, `90s`, `30m`, `1h`, or a bare number of seconds; `None` for anything else, including a duration too
/// long to represent.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    // `from_secs_f64` panics above u64::MAX seconds (`99999999999999999999h`): refuse instead.
    Duration::try_from_secs_f64(seconds).ok()
}

fn show(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64()).replace(".000s", "s")
}

/// Field deserializers that check as they read, so an error in a policy file carries the line and column of
/// the bad value (a check after reading could only name the field).
mod checked {
    use std::fmt;

    use serde::de::{DeserializeSeed, Error, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer};

    use crate::faults::FaultKind;

    pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let text = String::deserialize(d)?;
        super::check_duration(&text).map_err(D::Error::custom)?;
        Ok(text)
    }

    pub(super) fn cpu_load<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
        // Read wider than u8, so 300 or -1 get the message a 0 gets rather than the format's own.
        let load = i64::deserialize(d)?;
        match u8::try_from(load) {
            Ok(load) => super::check_cpu_load(load).map(|()| load).map_err(D::Error::custom),
            Err(_) => Err(D::Error::custom(format!("invalid max_cpu_load: expected 1 to 100, found {load}"))),
        }
    }

    pub(super) fn fault_kinds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        /// One kind, refused as it is read.
        struct Kind(String);

        impl<'de> Deserialize<'de> for Kind {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
                let name = String::deserialize(d)?;
                FaultKind::parse(&name).map_err(D::Error::custom)?;
                Ok(Kind(name))
            }
        }

        let kinds = Option::<Vec<Kind>>::deserialize(d)?;
        Ok(kinds.map(|kinds| kinds.into_iter().map(|Kind(name)| name).collect()))
    }

    pub(super) fn probe_commands<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<String>>, D::Error> {
        let prefixes = Vec::<Vec<String>>::deserialize(d)?;
        for (index, prefix) in prefixes.iter().enumerate() {
            super::check_probe_prefix(index, prefix).map_err(D::Error::custom)?;
        }
        Ok(prefixes)
    }

    pub(super) fn protected_cmdlines<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_seq(Patterns("protected_cmdlines"))
    }

    pub(super) fn allow_cmdlines<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_seq(Patterns("allow_cmdlines"))
    }

    pub(super) fn deny_cmdlines<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_seq(Patterns("deny_cmdlines"))
    }

    /// A list of regexes, each compiled as it is read; the message is the one `Policy::validate` gives.
    struct Patterns(&'static str);

    impl<'de> Visitor<'de> for Patterns {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of regular expressions for {}", self.0)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut patterns = Vec::new();
            while let Some(pattern) =
                seq.next_element_seed(Pattern { list: self.0, index: patterns.len() })?
            {
                patterns.push(pattern);
            }
            Ok(patterns)
        }
    }

    /// One regex of a list, refused while it is being read so the error points at it, not at the list.
    struct Pattern {
        list: &'static str,
        index: usize,
    }

    impl<'de> DeserializeSeed<'de> for Pattern {
        type Value = String;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
            let pattern = String::deserialize(d)?;
            match regex::Regex::new(&pattern) {
                Ok(_) => Ok(pattern),
                Err(e) => Err(D::Error::custom(format!(
                    "invalid {}: pattern {} ({pattern:?}): {e}",
                    self.list, self.index
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5d"), None);
        // Too long for a `Duration`: refused, not a panic.
        assert_eq!(parse_duration("99999999999999999999h"), None);
    }

    #[test]
    fn the_default_policy_is_valid_and_protects_the_usual_names() {
        let policy = AgentPolicy::default();
        policy.validate().unwrap();
        assert!(policy.processes.protected_names.contains(&"sshd".to_string()));
        assert_eq!(policy.max_duration().unwrap(), Duration::from_secs(3600));
        assert!(policy.probe_commands.is_empty(), "no probe command is allowed by default");
    }

    #[test]
    fn probe_commands_are_argv_prefixes_and_every_refusal_names_the_rule() {
        let argv = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        let none = AgentPolicy::default();
        let refused = none.check_probe(&argv(&["/bin/true"])).unwrap_err().to_string();
        assert!(
            refused.contains("'probe-commands'") && refused.contains("allows no probe command"),
            "{refused}"
        );
        let policy = AgentPolicy {
            probe_commands: vec![argv(&["/usr/bin/systemctl", "is-active"]), argv(&["/bin/true"])],
            ..AgentPolicy::default()
        };
        policy.validate().unwrap();
        policy.check_probe(&argv(&["/usr/bin/systemctl", "is-active", "nginx"])).unwrap();
        policy.check_probe(&argv(&["/bin/true"])).unwrap();
        for bad in [&["/usr/bin/systemctl", "stop", "nginx"][..], &["sh", "-c", "id"], &["/bin/truex"]] {
            let e = policy.check_probe(&argv(bad)).unwrap_err().to_string();
            assert!(e.contains("'probe-commands'") && e.contains(&bad.join(" ")), "{e}");
        }
        let relative = AgentPolicy { probe_commands: vec![argv(&["true"])], ..AgentPolicy::default() };
        assert!(relative.validate().unwrap_err().to_string().contains("absolute path"));
        let empty = AgentPolicy { probe_commands: vec![vec![]], ..AgentPolicy::default() };
        assert!(empty.validate().unwrap_err().to_string().contains("entry 0"));
        for bad in ["kubelet/pods", "/var/lib/../tmp"] {
            let policy = AgentPolicy {
                pods: PodRules { volume_paths: vec![PathBuf::from(bad)], ..PodRules::default() },
                ..AgentPolicy::default()
            };
            let e = policy.validate().unwrap_err().to_string();
            assert!(e.contains("pods.volume_paths") && e.contains("entry 0") && e.contains(bad), "{e}");
        }
        AgentPolicy::default().validate().unwrap();
    }
}
