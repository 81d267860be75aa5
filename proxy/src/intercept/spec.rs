//! What to intercept: [`InterceptSpec`], checked, and rendered as the one nft script of its table (a REDIRECT
//! per hook and source family, skipping the proxy's own marked packets); cgroup paths resolved as nft wants.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{InterceptError, UPSTREAM_MARK, invalid, validate_netns};

/// The priority of both nat chains: before the usual DNAT chains at -100 (`dstnat`).
const CHAIN_PRIORITY: i32 = -101;

/// Where nft looks cgroup v2 paths up (`socket cgroupv2 level N "PATH"` stats `/sys/fs/cgroup/PATH`).
const NFT_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// What to intercept and where to send it. Reads from a config file (`serde`), defaults as documented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterceptSpec {
    /// The TCP destination port taken over: new connections to it (any address) are redirected.
    pub port: u16,
    /// The local port of the proxy listener connections are redirected to.
    pub to: u16,
    /// Only connections from these source addresses or networks (`10.0.0.2`, `10.0.0.0/8`, `fd00::/64`);
    /// empty, any source. With only IPv4 entries, IPv6 connections are not intercepted, and the reverse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Only locally originated connections whose socket was made by a process in this cgroup v2 or below it,
    /// as `/proc/PID/cgroup` shows it (`/system.slice/app.service`), or as a path under the cgroup2 mount.
    /// Needs `forwarded: false`: a connection from another host has no local socket to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Intercept connections opened on this host (hook `output`). Default true.
    #[serde(default = "yes")]
    pub local: bool,
    /// Intercept connections arriving from other hosts or namespaces (hook `prerouting`). Default true.
    #[serde(default = "yes")]
    pub forwarded: bool,
    /// A named network namespace (`/run/netns/NAME`); `None` is this process's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

fn yes() -> bool {
    true
}

// === impl InterceptSpec ===

impl InterceptSpec {
    /// Intercepts every connection to `port`, local and forwarded, in this network namespace, sending it to
    /// the listener on local port `to`.
    pub fn new(port: u16, to: u16) -> InterceptSpec {
        InterceptSpec {
            port,
            to,
            sources: Vec::new(),
            cgroup: None,
            local: true,
            forwarded: true,
            netns: None,
        }
    }

    /// Refuses what could never be applied: port 0, no hook, bad sources, a cgroup that does not exist or
    /// that cannot match forwarded traffic, a namespace that does not exist.
    pub fn validate(&self) -> Result<(), InterceptError> {
        self.rules().map(drop)
    }

    /// The whole table `table` as one nft script (what [`Interception::apply`] loads, for a dry run).
    pub fn script(&self, table: &str) -> Result<String, InterceptError> {
        let rules = self.rules()?;
        let mut out = format!("create table inet {table}\n");
        for (chain, _) in &rules {
            let hook = format!("type nat hook {chain} priority {CHAIN_PRIORITY}; policy accept;");
            let _ = writeln!(out, "add chain inet {table} {chain} {{ {hook} }}");
        }
        let verdict = format!("meta mark != {UPSTREAM_MARK:#010x} counter redirect to :{}", self.to);
        for (chain, matches) in rules.iter().flat_map(|(chain, rules)| rules.iter().map(move |r| (chain, r)))
        {
            let _ = writeln!(out, "add rule inet {table} {chain} {matches} {verdict}");
        }
        Ok(out)
    }

    /// Validates and returns each chain with the match part of its rules.
    fn rules(&self) -> Result<Vec<(&'static str, Vec<String>)>, InterceptError> {
        if self.port == 0 {
            return Err(invalid("port", "expected a TCP port from 1 to 65535, found 0".into()));
        }
        if self.to == 0 {
            return Err(invalid("to", "expected the proxy listener's port (1 to 65535), found 0".into()));
        }
        if !self.local && !self.forwarded {
            return Err(invalid(
                "hooks",
                "expected local or forwarded (or both) to be true, found both false (nothing to intercept)"
                    .into(),
            ));
        }
        validate_netns(self.netns.as_deref())?;
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for source in &self.sources {
            match parse_network(source)? {
                IpAddr::V4(_) => v4.push(source.trim()),
                IpAddr::V6(_) => v6.push(source.trim()),
            }
        }
        let port = format!("tcp dport {}", self.port);
        let mut by_source = Vec::new();
        if self.sources.is_empty() {
            by_source.push(port);
        } else {
            if !v4.is_empty() {
                by_source.push(format!("{port} ip saddr {{ {} }}", v4.join(", ")));
            }
            if !v6.is_empty() {
                by_source.push(format!("{port} ip6 saddr {{ {} }}", v6.join(", ")));
            }
        }
        let mut chains = Vec::new();
        if self.forwarded {
            if let Some(cgroup) = &self.cgroup {
                return Err(invalid(
                    "cgroup",
                    format!(
                        "expected forwarded: false with a cgroup (connections from other hosts have no local \
                         socket to match), found forwarded: true and cgroup {cgroup:?}"
                    ),
                ));
            }
            chains.push(("prerouting", by_source.clone()));
        }
        if self.local {
            let rules = match &self.cgroup {
                Some(cgroup) => {
                    let (level, path) = resolve_cgroup(cgroup)?;
                    let socket = format!(" socket cgroupv2 level {level} \"{path}\"");
                    by_source.into_iter().map(|r| r + &socket).collect()
                }
                None => by_source,
            };
            chains.push(("output", rules));
        }
        Ok(chains)
    }
}

/// `10.0.0.2`, `10.0.0.0/8`, `fd00::/64`: the address, or why it is not one.
fn parse_network(source: &str) -> Result<IpAddr, InterceptError> {
    let text = source.trim();
    let expected = || {
        invalid(
            "sources",
            format!("expected an IP address or network (10.0.0.0/8, fd00::/64), found {source:?}"),
        )
    };
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| expected())?;
    if let Some(prefix) = prefix {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        match prefix.parse::<u8>() {
            Ok(bits) if bits <= max => {}
            _ => return Err(expected()),
        }
    }
    Ok(addr)
}

/// The cgroup's level (its depth below the cgroup2 root) and its path as nft looks it up (relative to
/// `/sys/fs/cgroup`); refuses a cgroup that does not exist.
fn resolve_cgroup(cgroup: &str) -> Result<(usize, String), InterceptError> {
    let bad = |reason: String| invalid("cgroup", reason);
    if cgroup.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return Err(bad(format!(
            "expected a cgroup path without quotes, backslashes or control characters, found {cgroup:?}"
        )));
    }
    let root = cgroup2_root()?;
    let relative = Path::new(cgroup).strip_prefix(&root).unwrap_or(Path::new(cgroup));
    let parts: Vec<&str> =
        relative.to_str().unwrap_or_default().split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(bad(format!(
            "expected a cgroup below the root, without '.' or '..' (/system.slice/app.service), \
             found {cgroup:?}"
        )));
    }
    let dir = parts.iter().fold(root.clone(), |dir, part| dir.join(part));
    if !dir.is_dir() {
        return Err(bad(format!("expected an existing cgroup v2 directory, found no {}", dir.display())));
    }
    let Ok(under_nft_root) = dir.strip_prefix(NFT_CGROUP_ROOT) else {
        return Err(InterceptError::Unsupported(format!(
            "nft looks cgroup paths up under {NFT_CGROUP_ROOT}, found cgroup2 mounted at {}",
            root.display()
        )));
    };
    Ok((parts.len(), under_nft_root.to_string_lossy().into_owned()))
}

/// Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hosts with both
/// hierarchies (`/proc/self/mountinfo`).
pub fn cgroup2_root() -> Result<PathBuf, InterceptError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| {
        InterceptError::Unsupported(format!(
            "expected /proc/self/mountinfo to list the cgroup2 mount, found {e}"
        ))
    })?;
    let mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| {
            let (fields, fs) = line.split_once(" - ")?;
            let mount_point = fields.split(' ').nth(4)?;
            (fs.split(' ').next() == Some("cgroup2"))
                .then(|| PathBuf::from(mount_point.replace("\\040", " ")))
        })
        .collect();
    let preferred = mounts.iter().find(|m| *m == Path::new(NFT_CGROUP_ROOT));
    let under = || mounts.iter().find(|m| m.starts_with(NFT_CGROUP_ROOT));
    preferred
        .or_else(under)
        .or(mounts.first())
        .cloned()
        .ok_or_else(|| InterceptError::Unsupported("expected a cgroup2 mount, found none".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_loads_one_table_with_a_redirect_per_hook_and_source_family() {
        let spec = InterceptSpec {
            sources: vec!["10.0.0.0/8".into(), " 192.0.2.7".into(), "fd00::/64".into()],
            ..InterceptSpec::new(8080, 15001)
        };
        assert_eq!(
            spec.script("t").unwrap(),
            "create table inet t\n\
             add chain inet t prerouting { type nat hook prerouting priority -101; policy accept; }\n\
             add chain inet t output { type nat hook output priority -101; policy accept; }\n\
             add rule inet t prerouting tcp dport 8080 ip saddr { 10.0.0.0/8, 192.0.2.7 } \
             meta mark != 0x000000c4 counter redirect to :15001\n\
             add rule inet t prerouting tcp dport 8080 ip6 saddr { fd00::/64 } \
             meta mark != 0x000000c4 counter redirect to :15001\n\
             add rule inet t output tcp dport 8080 ip saddr { 10.0.0.0/8, 192.0.2.7 } \
             meta mark != 0x000000c4 counter redirect to :15001\n\
             add rule inet t output tcp dport 8080 ip6 saddr { fd00::/64 } \
             meta mark != 0x000000c4 counter redirect to :15001\n"
        );
        let local_only = InterceptSpec { forwarded: false, ..InterceptSpec::new(80, 8080) };
        let script = local_only.script("t").unwrap();
        assert!(
            !script.contains("prerouting") && script.contains("output tcp dport 80 meta mark"),
            "{script}"
        );
    }

    #[test]
    fn specs_that_cannot_apply_are_refused_saying_what_was_expected() {
        let error = |spec: InterceptSpec| spec.validate().unwrap_err().to_string();
        assert_eq!(
            error(InterceptSpec::new(0, 1)),
            "invalid port: expected a TCP port from 1 to 65535, found 0"
        );
        assert!(error(InterceptSpec::new(1, 0)).starts_with("invalid to: expected"));
        let none = InterceptSpec { local: false, forwarded: false, ..InterceptSpec::new(1, 2) };
        assert!(error(none).contains("found both false"));
        for bad in ["10.0.0.0/33", "fd00::/129", "host.example", "10.0.0.0/", ""] {
            let spec = InterceptSpec { sources: vec![bad.into()], ..InterceptSpec::new(1, 2) };
            assert!(error(spec).starts_with("invalid sources: expected an IP address or network"), "{bad}");
        }
        let cgroup = InterceptSpec { cgroup: Some("/x".into()), ..InterceptSpec::new(1, 2) };
        assert!(error(cgroup).starts_with("invalid cgroup: expected forwarded: false"));
        let quoted =
            InterceptSpec { cgroup: Some("a\"b".into()), forwarded: false, ..InterceptSpec::new(1, 2) };
        assert!(error(quoted).starts_with("invalid cgroup: expected a cgroup path without quotes"));
        let netns = InterceptSpec { netns: Some("a/b".into()), ..InterceptSpec::new(1, 2) };
        assert!(error(netns).starts_with("invalid netns: expected the name of a namespace"));
        let missing = InterceptSpec { netns: Some("chaos-no-such-netns".into()), ..InterceptSpec::new(1, 2) };
        assert!(error(missing).contains("found no /run/netns/chaos-no-such-netns"));
    }

    #[test]
    fn specs_read_from_config_with_defaults() {
        let spec: InterceptSpec = serde_json::from_str(r#"{"port": 5432, "to": 15432}"#).unwrap();
        assert_eq!(spec, InterceptSpec::new(5432, 15432));
        let spec: InterceptSpec =
            serde_saphyr::from_str("port: 80\nto: 8080\nsources: [10.0.0.0/8]\nlocal: false\nnetns: blue\n")
                .unwrap();
        assert_eq!((spec.local, spec.forwarded, spec.netns.as_deref()), (false, true, Some("blue")));
        assert!(serde_json::from_str::<InterceptSpec>(r#"{"port": 80, "to": 1, "source": []}"#).is_err());
        assert_eq!(
            serde_json::to_string(&InterceptSpec::new(80, 8080)).unwrap(),
            r#"{"port":80,"to":8080,"local":true,"forwarded":true}"#
        );
    }
}
