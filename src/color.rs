//! Color on the terminal only: `--color auto|always|never` (auto: only when the stream is a terminal and
//! `NO_COLOR` is unset or empty, see no-color.org), for the verdict on stdout and the log lines on stderr.

use std::io::IsTerminal;
use std::sync::OnceLock;

/// `--color`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Color when writing to a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    Always,
    Never,
}

static STDOUT: OnceLock<bool> = OnceLock::new();

impl ColorChoice {
    /// Whether to color a stream that is (or is not) a terminal.
    pub fn enabled(self, terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    /// Decides for stdout once, at start; returns whether stderr gets color.
    pub fn init(self) -> bool {
        let _ = STDOUT.set(self.enabled(std::io::stdout().is_terminal()));
        self.enabled(std::io::stderr().is_terminal())
    }
}

/// `verdict` (passed, failed, invalid, inconclusive) in upper case, green, red or yellow when stdout is colored.
pub fn verdict(verdict: &str) -> String {
    let text = verdict.to_uppercase();
    if !STDOUT.get().copied().unwrap_or(false) {
        return text;
    }
    let code = match verdict {
        "passed" => "32",
        "failed" => "31",
        _ => "33",
    };
    format!("\x1b[1;{code}m{text}\x1b[0m")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_and_always_ignore_the_terminal_and_auto_needs_one() {
        assert!(!ColorChoice::Never.enabled(true));
        assert!(ColorChoice::Always.enabled(false));
        assert!(!ColorChoice::Auto.enabled(false));
    }
}
