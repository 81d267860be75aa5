//! `chaos slo status FILE... --prometheus URL [--at TIME] [--json]`: the live error budget of each SLO, as a
//! table for people or JSON for machines, with an exit code a deploy or CI gate reads (0 budget left, 1 a
//! budget exhausted, 2 bad input, 3 no data or Prometheus unreachable). The figures come from
//! `chaos_controller::slo_file::status`.

use std::path::PathBuf;
use std::sync::Arc;

use chaos_controller::slo_file::query::Prometheus;
use chaos_controller::slo_file::status::{self, Exhaustion, State, Status};
use chaos_controller::slo_file::{self, windows};

use super::trim_float;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// SLO files (YAML or JSON).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The Prometheus server holding the SLOs' metrics (plain http), e.g. http://prometheus:9090.
    #[arg(long, value_name = "URL")]
    prometheus: String,
    /// Evaluate at this time instead of now: RFC 3339 (2026-12-07T03:00:00Z) or unix seconds.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// Runs the command; the exit code is [`status::exit_code`]'s.
pub async fn run(args: StatusArgs) -> anyhow::Result<u8> {
    let at = match args.at.as_deref().map(parse_time).transpose() {
        Ok(at) => at.unwrap_or_else(now),
        Err(message) => {
            eprintln!("--at: {message}");
            return Ok(2);
        }
    };
    let url = args.prometheus.trim();
    if url.starts_with("https://") {
        eprintln!("--prometheus: https is not supported (the query client speaks plain http): use http://");
        return Ok(2);
    }
    if !url.starts_with("http://") {
        eprintln!("--prometheus: expected a URL like http://prometheus:9090, found {url:?}");
        return Ok(2);
    }
    let slos = match slo_file::load_all(&args.files) {
        Ok(slos) => slos,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(2);
        }
    };
    let prom = Arc::new(Prometheus::new(url));
    let statuses = status::status_all(prom.clone(), &slos, at).await;
    if args.json {
        let doc = status::json(&statuses, at, prom.url(), prom.queries_issued());
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", table(&statuses));
    }
    for s in &statuses {
        if let Some(reason) = &s.reason {
            eprintln!("{}: {}: {reason}", s.slo.id(), state_text(s.state));
        }
    }
    Ok(status::exit_code(&statuses))
}

/// Unix seconds now.
fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// RFC 3339 or unix seconds (fractions allowed).
fn parse_time(text: &str) -> Result<f64, String> {
    let t = text.trim();
    if let Ok(seconds) = t.parse::<f64>() {
        return if seconds.is_finite() && seconds >= 0.0 {
            Ok(seconds)
        } else {
            Err(format!("{text:?} is not a time: expected unix seconds ≥ 0 or RFC 3339"))
        };
    }
    chrono::DateTime::parse_from_rfc3339(t).map(|d| d.timestamp_micros() as f64 / 1e6).map_err(|e| {
        format!("{text:?} is not a time ({e}): expected RFC 3339 (2026-12-07T03:00:00Z) or unix seconds")
    })
}

fn state_text(state: State) -> &'static str {
    match state {
        State::Ok => "ok",
        State::Exhausted => "budget exhausted",
        State::NoData => "no data",
        State::Unreachable => "unreachable",
        State::Invalid => "invalid",
    }
}

/// The table: one line per SLO, columns aligned.
pub fn table(statuses: &[Status]) -> String {
    let header = [
        "SLO",
        "SLI",
        "OBJECTIVE",
        "PERIOD",
        "SLI NOW",
        "BUDGET LEFT",
        "MINUTES LEFT",
        "BURN NOW",
        "FIRING",
        "EXHAUSTION",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for s in statuses {
        let slo = &s.slo;
        let mut row = vec![
            slo.id(),
            status::sli_kind(&slo.sli).replace('_', " "),
            format!("{}%", trim_float(slo.objective * 100.0)),
            windows::period_text(slo.period),
        ];
        match &s.figures {
            None => {
                row.push(state_text(s.state).to_string());
                row.extend(std::iter::repeat_n("-".to_string(), 5));
            }
            Some(f) => {
                let burn = match f.current {
                    Some((w, Some(rate))) => format!("{} ({})", fixed(rate, 2), windows::prom_duration(w)),
                    Some((w, None)) => format!("no data ({})", windows::prom_duration(w)),
                    None => "-".to_string(),
                };
                let firing: Vec<&str> = s.firing().iter().map(|x| x.as_str()).collect();
                row.extend([
                    format!("{}%", fixed((1.0 - f.error_ratio) * 100.0, 4)),
                    format!("{}%", fixed(f.remaining * 100.0, 2)),
                    s.remaining_minutes().map(|m| fixed(m, 1)).unwrap_or_default(),
                    burn,
                    if firing.is_empty() { "-".to_string() } else { firing.join(",") },
                    match f.exhaustion {
                        Exhaustion::Exhausted => "exhausted".to_string(),
                        Exhaustion::Never => "never".to_string(),
                        Exhaustion::Unknown => "unknown".to_string(),
                        Exhaustion::In(d) => status::human_duration(d),
                    },
                ]);
            }
        }
        rows.push(row);
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                let pad = w - cell.chars().count();
                // Text columns left-aligned, figures right-aligned.
                if !(4..8).contains(&c) {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `x` with `digits` decimals, without a negative zero.
fn fixed(x: f64, digits: usize) -> String {
    let text = format!("{x:.digits$}");
    if text.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
        text.trim_start_matches('-').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_rfc3339_or_unix_seconds() {
        assert_eq!(parse_time("1790000000"), Ok(1_790_000_000.0));
        assert_eq!(parse_time("2026-12-07T03:00:00Z"), Ok(1_796_612_400.0));
        assert_eq!(parse_time("2026-12-07T04:00:00+01:00"), Ok(1_796_612_400.0));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
        assert!(parse_time("-5").is_err());
        assert_eq!(fixed(-0.0001, 2), "0.00");
    }
}
