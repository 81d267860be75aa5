//! `Signal`: a POSIX signal parsed from a name (`KILL`, `SIGTERM`, `int`) or a number (`9`).

use std::fmt;
use std::str::FromStr;

use nix::sys::signal::Signal as NixSignal;

use crate::AgentError;

/// A signal the kill fault may send. Parsing is the only way in, so every value is a real signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(NixSignal);

// === impl Signal ===

impl Signal {
    pub const KILL: Signal = Signal(NixSignal::SIGKILL);
    pub const TERM: Signal = Signal(NixSignal::SIGTERM);
    pub const INT: Signal = Signal(NixSignal::SIGINT);
    pub const STOP: Signal = Signal(NixSignal::SIGSTOP);
    pub const CONT: Signal = Signal(NixSignal::SIGCONT);

    /// Parses `KILL`, `SIGKILL`, `sigkill` or `9`. Case is ignored; the `SIG` prefix is optional.
    pub fn parse(s: &str) -> Result<Signal, AgentError> {
        let invalid = |reason: String| AgentError::Invalid { what: "signal", reason };
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err(invalid("expected a name like KILL or a number like 9, found nothing".into()));
        }
        if trimmed.bytes().all(|b| b.is_ascii_digit()) {
            let n: i32 =
                trimmed.parse().map_err(|_| invalid(format!("expected a signal number, found '{s}'")))?;
            return NixSignal::try_from(n)
                .map(Signal)
                .map_err(|_| invalid(format!("expected a signal number between 1 and 31, found {n}")));
        }
        let upper = trimmed.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
        NixSignal::from_str(&name)
            .map(Signal)
            .map_err(|_| invalid(format!("expected a signal name like KILL, TERM or INT, found '{s}'")))
    }

    /// The signal as `nix` knows it, for callers that send it themselves.
    pub fn as_nix(self) -> NixSignal {
        self.0
    }

    /// The signal number, as `ExitStatusExt::signal()` reports it.
    pub fn number(self) -> i32 {
        self.0 as i32
    }
}

impl FromStr for Signal {
    type Err = AgentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Signal::parse(s)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_prefixes_parse_to_the_same_signal() {
        for s in ["KILL", "SIGKILL", "sigkill", "kill", "9", " 9 "] {
            assert_eq!(Signal::parse(s).unwrap(), Signal::KILL, "{s}");
        }
        assert_eq!(Signal::parse("TERM").unwrap(), Signal::TERM);
        assert_eq!(Signal::parse("INT").unwrap().number(), 2);
        assert_eq!(Signal::parse("usr1").unwrap().to_string(), "SIGUSR1");
    }

    #[test]
    fn garbage_is_refused_with_what_was_found() {
        for (s, needle) in [("", "found nothing"), ("NOPE", "'NOPE'"), ("0", "found 0"), ("99", "found 99")] {
            let err = Signal::parse(s).unwrap_err().to_string();
            assert!(err.contains(needle), "{s}: {err}");
        }
    }
}
