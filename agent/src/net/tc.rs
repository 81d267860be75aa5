//! The qdisc faults: [`Bandwidth`] (a `tbf` rate limit) and [`Latency`] (a `netem` delay), on a device's egress.
//!
//! Each is the device's root qdisc with the fixed handle [`QDISC_HANDLE`], so an operator recognises it in
//! `tc qdisc show` and a revert deletes the root qdisc only while it still has that handle. Only a device whose
//! root qdisc is the kernel's default (handle `0:`: `noqueue`, `pfifo_fast`, `mq`, `fq_codel`, ...) is touched:
//! a qdisc someone else added, or another shaping fault, is refused, never replaced. The qdisc is added with
//! `tc qdisc add`, not `replace`, so the kernel itself refuses if a non-default qdisc appears in the meantime.
//! Deleting the root qdisc gives the device its default one back.
//!
//! One shaping fault per device at a time; they shape only what the device sends (egress).

use serde::{Deserialize, Deserializer, Serialize};

use super::{Capabilities, NetHandle, NetTarget, apply_with, run, validate_netns};
use crate::AgentError;
use crate::faults::{FaultId, FaultKind};
use crate::journal::{Journal, Undo};

/// The handle of every root qdisc this crate adds.
pub const QDISC_HANDLE: &str = "cafe:";

/// Rates below this make tc overflow its burst arithmetic; faults that slow, not stop, traffic do not need them.
const MIN_RATE_BITS: u64 = 8_000;
const MAX_RATE_BITS: u64 = 100_000_000_000;
/// tc stores the burst as a transmission time in a 32-bit count of scheduler ticks (about 274 s).
const MAX_BURST_SECONDS: f64 = 100.0;
/// 10 µs: tc rounds shorter bursts to nothing.
const MIN_BURST_SECONDS: f64 = 0.000_01;
const MIN_BURST_BYTES: u32 = 1514;
const DEFAULT_LATENCY_MS: u32 = 50;
/// netem's queue, in packets; its default of 1000 would add loss above ~120 Mbit/s with a 100 ms delay.
const NETEM_LIMIT: u32 = 100_000;

/// Limit what `device` sends to `rate`, with a token bucket (`tbf`) as its root qdisc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bandwidth {
    /// A named network namespace (`/run/netns/NAME`); `None` is the agent's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The network device whose egress is limited (`eth0`, `veth12ab`).
    pub device: String,
    /// tc's syntax: `1mbit`, `500kbit`, `1.5gbit`, `10mbps` (`bps` is bytes per second, as in tc), IEC `kibit`;
    /// a bare integer (or a YAML number) is bits per second. From 8kbit to 100gbit.
    #[serde(deserialize_with = "string_or_integer")]
    pub rate: String,
    /// Bytes sent at full speed before the rate applies; default 10 ms worth of the rate, at least 16 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_bytes: Option<u32>,
    /// The longest a packet may wait in the queue before it is dropped; default 50 ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u32>,
}

/// Delay every packet `device` sends by `delay_ms` (± `jitter_ms`), with `netem` as its root qdisc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    pub device: String,
    /// Added delay, 1 to 60000 ms.
    pub delay_ms: u32,
    /// Uniform variation around the delay, at most `delay_ms`; default 0. A jitter reorders packets.
    #[serde(default)]
    pub jitter_ms: u32,
    /// How much each packet's jitter depends on the previous one's, in percent (0 to 100); default 0.
    #[serde(default)]
    pub correlation: f64,
}

// === impl Bandwidth ===

impl Bandwidth {
    pub fn kind(&self) -> FaultKind {
        FaultKind::NetworkBandwidth
    }

    /// Refuses a bad device name, rate, burst or latency, or a namespace that does not exist.
    pub fn validate(&self) -> Result<(), AgentError> {
        validate_netns(self.netns.as_deref())?;
        validate_device(&self.device)?;
        self.tbf_args().map(|_| ())
    }

    /// What `apply` checks on the host without changing it: the capabilities, and a device that exists and
    /// still has the kernel's default root qdisc.
    pub fn check_host(&self, caps: &Capabilities) -> Result<(), AgentError> {
        self.validate()?;
        check_qdisc(self.kind(), self.netns.as_deref(), &self.device, caps)
    }

    /// Adds the `tbf` root qdisc. Refused if the device's root qdisc is not the default one. The journal record
    /// is written first; on error nothing is left applied.
    pub fn apply(&self, journal: &Journal, caps: &Capabilities) -> Result<NetHandle, AgentError> {
        self.validate()?;
        apply_qdisc(self.kind(), self.netns.as_deref(), &self.device, self.tbf_args()?, journal, caps)
    }

    /// The rate in bits per second.
    pub fn rate_bits(&self) -> Result<u64, AgentError> {
        parse_rate(&self.rate)
    }

    /// `tbf rate <bits>bit burst <bytes> latency <ms>ms`.
    fn tbf_args(&self) -> Result<Vec<String>, AgentError> {
        let rate = parse_rate(&self.rate)?;
        let burst = match self.burst_bytes {
            Some(burst) => burst,
            None => (rate / 8 / 100).clamp(16 * 1024, u64::from(u32::MAX)) as u32,
        };
        if burst < MIN_BURST_BYTES {
            return Err(AgentError::invalid(
                "burst_bytes",
                format!(
                    "expected at least {MIN_BURST_BYTES} (one full-size Ethernet frame; a smaller burst drops every \
                     such frame), found {burst}"
                ),
            ));
        }
        let seconds = f64::from(burst) * 8.0 / rate as f64;
        if seconds > MAX_BURST_SECONDS {
            return Err(AgentError::invalid(
                "burst_bytes",
                format!(
                    "a burst of {burst} bytes takes {seconds:.0} s to send at {rate} bit/s; expected at most \
                     {MAX_BURST_SECONDS:.0} s (raise the rate or lower burst_bytes)"
                ),
            ));
        }
        if seconds < MIN_BURST_SECONDS {
            return Err(AgentError::invalid(
                "burst_bytes",
                format!(
                    "a burst of {burst} bytes lasts under 10 µs at {rate} bit/s, which tc rounds to nothing; \
                     expected at least {} bytes at this rate",
                    rate.div_ceil(8 * 100_000)
                ),
            ));
        }
        let latency = self.latency_ms.unwrap_or(DEFAULT_LATENCY_MS);
        if !(1..=10_000).contains(&latency) {
            return Err(AgentError::invalid("latency_ms", format!("expected 1 to 10000, found {latency}")));
        }
        // tc turns the latency into a queue limit in bytes, a 32-bit number it silently truncates.
        let queue = rate as f64 / 8.0 * f64::from(latency) / 1000.0 + f64::from(burst);
        if queue > f64::from(u32::MAX) {
            return Err(AgentError::invalid(
                "latency_ms",
                format!(
                    "{latency} ms at {rate} bit/s is a queue of {queue:.0} bytes, above tc's limit of {} bytes; \
                     expected a lower latency_ms",
                    u32::MAX
                ),
            ));
        }
        Ok([
            "tbf",
            "rate",
            &format!("{rate}bit"),
            "burst",
            &burst.to_string(),
            "latency",
            &format!("{latency}ms"),
        ]
        .map(str::to_string)
        .to_vec())
    }
}

// === impl Latency ===

impl Latency {
    pub fn kind(&self) -> FaultKind {
        FaultKind::NetworkLatency
    }

    /// Refuses a bad device name, delay, jitter or correlation, or a namespace that does not exist.
    pub fn validate(&self) -> Result<(), AgentError> {
        validate_netns(self.netns.as_deref())?;
        validate_device(&self.device)?;
        self.netem_args().map(|_| ())
    }

    /// What `apply` checks on the host without changing it: the capabilities, and a device that exists and
    /// still has the kernel's default root qdisc.
    pub fn check_host(&self, caps: &Capabilities) -> Result<(), AgentError> {
        self.validate()?;
        check_qdisc(self.kind(), self.netns.as_deref(), &self.device, caps)
    }

    /// Adds the `netem` root qdisc. Refused (unsupported) when the kernel has no netem, and when the device's root
    /// qdisc is not the default one. The journal record is written first; on error nothing is left applied.
    pub fn apply(&self, journal: &Journal, caps: &Capabilities) -> Result<NetHandle, AgentError> {
        self.validate()?;
        apply_qdisc(self.kind(), self.netns.as_deref(), &self.device, self.netem_args()?, journal, caps)
    }

    /// `netem limit <packets> delay <d>ms [<jitter>ms [<correlation>%]]`.
    fn netem_args(&self) -> Result<Vec<String>, AgentError> {
        if !(1..=60_000).contains(&self.delay_ms) {
            return Err(AgentError::invalid(
                "delay_ms",
                format!("expected 1 to 60000, found {}", self.delay_ms),
            ));
        }
        if self.jitter_ms > self.delay_ms {
            return Err(AgentError::invalid(
                "jitter_ms",
                format!("expected at most delay_ms ({}), found {}", self.delay_ms, self.jitter_ms),
            ));
        }
        if !(0.0..=100.0).contains(&self.correlation) {
            return Err(AgentError::invalid(
                "correlation",
                format!("expected a percentage from 0 to 100, found {}", self.correlation),
            ));
        }
        let mut args = vec!["netem".into(), "limit".into(), NETEM_LIMIT.to_string()];
        args.extend(["delay".into(), format!("{}ms", self.delay_ms)]);
        if self.jitter_ms > 0 {
            args.push(format!("{}ms", self.jitter_ms));
            if self.correlation > 0.0 {
                args.push(format!("{}%", self.correlation));
            }
        }
        Ok(args)
    }
}

// === shared ===

/// The root qdisc of a device as `tc qdisc show` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootQdisc {
    pub(crate) kind: String,
    pub(crate) handle: String,
}

fn apply_qdisc(
    kind: FaultKind,
    netns: Option<&str>,
    device: &str,
    qdisc: Vec<String>,
    journal: &Journal,
    caps: &Capabilities,
) -> Result<NetHandle, AgentError> {
    check_qdisc(kind, netns, device, caps)?;
    let id = FaultId::next();
    let (ns, dev) = (netns.map(str::to_string), device.to_string());
    let target = NetTarget::Qdisc { netns: ns.clone(), device: dev.clone(), handle: QDISC_HANDLE.into() };
    let undo = Undo::DeleteQdisc { netns: ns, device: dev, handle: QDISC_HANDLE.into() };
    let mut args = vec!["qdisc", "add", "dev", device, "root", "handle", QDISC_HANDLE];
    args.extend(qdisc.iter().map(String::as_str));
    apply_with(id, kind, journal, undo, target, || run(netns, "tc", &args, None).map(drop))
}

/// Refuses a qdisc fault this host cannot take, changing nothing: missing `tc` or qdisc kind, `ip` for a
/// namespace, a device that does not exist, or a device whose root qdisc is not the kernel's default.
fn check_qdisc(
    kind: FaultKind,
    netns: Option<&str>,
    device: &str,
    caps: &Capabilities,
) -> Result<(), AgentError> {
    caps.require(kind)?;
    caps.require_netns(kind, netns)?;
    if let Some(root) = root_qdisc(netns, device)?
        && root.handle != "0:"
    {
        let whose = if root.handle == QDISC_HANDLE { " (another chaos fault's)" } else { "" };
        return Err(AgentError::Forbidden {
            rule: "foreign-qdisc".into(),
            detail: format!(
                "dev {device}{} already has the root qdisc {} {}{whose}; expected the kernel's default (handle \
                 0:), and a qdisc this fault did not add is never replaced",
                in_netns(netns),
                root.kind,
                root.handle
            ),
        });
    }
    Ok(())
}

/// The root qdisc of `device`, `None` when it has none (a device that is down may have none shown).
pub(crate) fn root_qdisc(netns: Option<&str>, device: &str) -> Result<Option<RootQdisc>, AgentError> {
    let shown = match run(netns, "tc", &["qdisc", "show", "dev", device, "root"], None) {
        Ok(out) => out,
        Err(AgentError::Command { detail, .. }) if detail.contains("Cannot find device") => {
            return Err(AgentError::invalid(
                "device",
                format!("expected an existing network device, found no device {device:?}{}", in_netns(netns)),
            ));
        }
        Err(e) => return Err(e),
    };
    Ok(shown.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("qdisc"), Some(kind), Some(handle)) => {
                Some(RootQdisc { kind: kind.to_string(), handle: handle.to_string() })
            }
            _ => None,
        }
    }))
}

fn in_netns(netns: Option<&str>) -> String {
    netns.map(|ns| format!(" in netns {ns}")).unwrap_or_default()
}

/// A Linux interface name: 1 to 15 bytes (IFNAMSIZ - 1), no `/`, `:` or whitespace, not `.` or `..`.
pub(crate) fn validate_device(device: &str) -> Result<(), AgentError> {
    let bad_char = device.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
    if device.is_empty() || device.len() > 15 || bad_char || device == "." || device == ".." {
        return Err(AgentError::invalid(
            "device",
            format!(
                "expected a network device name (1 to 15 bytes, no '/', ':' or spaces), found {device:?}"
            ),
        ));
    }
    Ok(())
}

/// A rate in bits per second from tc's syntax (units case-insensitive, as tc reads them) or a bare integer of
/// bits per second.
pub fn parse_rate(text: &str) -> Result<u64, AgentError> {
    const UNITS: [(&str, f64); 18] = [
        ("bit", 1.0),
        ("kbit", 1e3),
        ("mbit", 1e6),
        ("gbit", 1e9),
        ("tbit", 1e12),
        ("kibit", 1024.0),
        ("mibit", 1_048_576.0),
        ("gibit", 1_073_741_824.0),
        ("tibit", 1_099_511_627_776.0),
        ("bps", 8.0),
        ("kbps", 8e3),
        ("mbps", 8e6),
        ("gbps", 8e9),
        ("tbps", 8e12),
        ("kibps", 8.0 * 1024.0),
        ("mibps", 8.0 * 1_048_576.0),
        ("gibps", 8.0 * 1_073_741_824.0),
        ("tibps", 8.0 * 1_099_511_627_776.0),
    ];
    let bad = || {
        AgentError::invalid(
            "rate",
            format!(
                "expected a rate like 1mbit, 500kbit or 10mbps (tc units: bit, kbit, mbit, gbit; bps, kbps, mbps, \
                 gbps are bytes per second) or an integer of bits per second, found {text:?}"
            ),
        )
    };
    let lower = text.trim().to_ascii_lowercase();
    let split = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let factor = match unit {
        "" if !number.contains('.') => 1.0,
        "" => return Err(bad()),
        unit => UNITS.iter().find(|(name, _)| *name == unit).map(|(_, f)| *f).ok_or_else(bad)?,
    };
    let bits = (value * factor).round();
    if !(MIN_RATE_BITS as f64..=MAX_RATE_BITS as f64).contains(&bits) {
        return Err(AgentError::invalid(
            "rate",
            format!("expected from 8kbit to 100gbit, found {text:?} ({bits} bit/s)"),
        ));
    }
    Ok(bits as u64)
}

/// `rate: 1000000` in YAML or JSON is a number; keep it as text like `rate: 1mbit`.
fn string_or_integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(u64),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::Text(text) => text,
        Raw::Number(n) => n.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bandwidth(rate: &str) -> Bandwidth {
        Bandwidth {
            netns: None,
            device: "eth0".into(),
            rate: rate.into(),
            burst_bytes: None,
            latency_ms: None,
        }
    }

    #[test]
    fn rates_read_as_tc_reads_them() {
        assert_eq!(parse_rate("1mbit").unwrap(), 1_000_000);
        assert_eq!(parse_rate("500kbit").unwrap(), 500_000);
        assert_eq!(parse_rate("10mbps").unwrap(), 80_000_000);
        assert_eq!(parse_rate("1.5Gbit").unwrap(), 1_500_000_000);
        assert!(parse_rate("1kibit").unwrap_err().to_string().contains("from 8kbit"));
        assert_eq!(parse_rate("8000000").unwrap(), 8_000_000);
        for bad in ["fast", "", "mbit", "1.5", "1 mbit", "1mbits", "-1mbit", "1..2mbit"] {
            let err = parse_rate(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid rate: expected a rate like 1mbit"), "{bad}: {err}");
            assert!(err.ends_with(&format!("found {bad:?}")), "{err}");
        }
        assert!(parse_rate("1tbit").unwrap_err().to_string().contains("expected from 8kbit to 100gbit"));
    }

    #[test]
    fn tbf_arguments_with_defaults_and_limits() {
        assert_eq!(
            bandwidth("8mbit").tbf_args().unwrap(),
            ["tbf", "rate", "8000000bit", "burst", "16384", "latency", "50ms"]
        );
        assert_eq!(bandwidth("10gbit").tbf_args().unwrap()[4], "12500000");
        let small = Bandwidth { burst_bytes: Some(1000), ..bandwidth("1mbit") };
        assert!(small.tbf_args().unwrap_err().to_string().contains("expected at least 1514"));
        let slow = Bandwidth { burst_bytes: Some(4_000_000), ..bandwidth("8kbit") };
        assert!(slow.tbf_args().unwrap_err().to_string().contains("expected at most 100 s"));
        let fast = Bandwidth { burst_bytes: Some(16384), ..bandwidth("100gbit") };
        assert!(fast.tbf_args().unwrap_err().to_string().contains("expected at least 125000 bytes"));
        bandwidth("100gbit").tbf_args().unwrap();
        let deep = Bandwidth { latency_ms: Some(10_000), ..bandwidth("10gbit") };
        assert!(deep.tbf_args().unwrap_err().to_string().contains("expected a lower latency_ms"));
        let lat = Bandwidth { latency_ms: Some(0), ..bandwidth("1mbit") };
        assert_eq!(
            lat.tbf_args().unwrap_err().to_string(),
            "invalid latency_ms: expected 1 to 10000, found 0"
        );
    }

    #[test]
    fn netem_arguments_and_limits() {
        let latency =
            Latency { netns: None, device: "eth0".into(), delay_ms: 100, jitter_ms: 10, correlation: 25.0 };
        assert_eq!(
            latency.netem_args().unwrap(),
            ["netem", "limit", "100000", "delay", "100ms", "10ms", "25%"]
        );
        let plain = Latency { jitter_ms: 0, ..latency.clone() };
        assert_eq!(plain.netem_args().unwrap(), ["netem", "limit", "100000", "delay", "100ms"]);
        assert!(Latency { delay_ms: 0, ..latency.clone() }.netem_args().is_err());
        let err = Latency { jitter_ms: 101, ..latency.clone() }.netem_args().unwrap_err().to_string();
        assert_eq!(err, "invalid jitter_ms: expected at most delay_ms (100), found 101");
        assert!(Latency { correlation: 101.0, ..latency }.netem_args().is_err());
    }

    #[test]
    fn device_names_and_serde() {
        validate_device("veth-a").unwrap();
        for bad in ["", "a/b", "eth0:1", "sixteen-bytes-xx", "..", "a b"] {
            let err = validate_device(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid device: expected a network device name"), "{err}");
        }
        let b: Bandwidth = serde_json::from_str(r#"{"device": "eth0", "rate": 8000000}"#).unwrap();
        assert_eq!(b.rate, "8000000");
        let b: Bandwidth =
            serde_json::from_str(r#"{"device": "eth0", "rate": "1mbit", "burst_bytes": 32768}"#).unwrap();
        assert_eq!(b.burst_bytes, Some(32768));
        assert!(
            serde_json::from_str::<Bandwidth>(r#"{"device": "eth0", "rate": "1mbit", "burst": 1}"#).is_err()
        );
        let l: Latency = serde_json::from_str(r#"{"device": "eth0", "delay_ms": 100}"#).unwrap();
        assert_eq!((l.jitter_ms, l.correlation), (0, 0.0));
    }
}
