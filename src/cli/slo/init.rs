//! `chaos slo init --service NAME [-o FILE]`: writes the commented starter SLO file
//! (`slo_file::init`) to FILE, never over an existing file, or to standard output.

use std::io::Write;
use std::path::PathBuf;

use chaos_controller::slo_file::{self, init};

#[derive(clap::Args)]
pub struct InitArgs {
    /// The service the SLOs are for (letters, digits, `_`, `.`, `-`); also the `job` label matched.
    #[arg(long)]
    service: String,
    /// Write the file here (refused when it exists); standard output without it.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// Exit 0 written, 2 on a bad service name or an existing or unwritable file.
pub fn run(args: InitArgs) -> u8 {
    let text = match init::render(&args.service) {
        Ok(text) => text,
        Err(why) => {
            eprintln!("chaos slo init: {why}");
            return 2;
        }
    };
    let Some(path) = args.output else {
        print!("{text}");
        return 0;
    };
    let written =
        std::fs::OpenOptions::new().write(true).create_new(true).open(&path).and_then(|mut file| {
            let done = file.write_all(text.as_bytes()).and_then(|()| file.sync_all());
            if done.is_err() {
                // A half-written starter file would be refused by the next run: leave nothing.
                let _ = std::fs::remove_file(&path);
            }
            done
        });
    match written {
        Ok(()) => {
            let ids = slo_file::parse(&path.display().to_string(), &text)
                .map(|slos| slos.iter().map(|s| s.id()).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            eprintln!("wrote {}: {ids}; check it with chaos slo check {}", path.display(), path.display());
            0
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "chaos slo init: {} exists; not overwriting it (remove it or give another -o)",
                path.display()
            );
            2
        }
        Err(e) => {
            eprintln!("chaos slo init: cannot write {}: {e}", path.display());
            2
        }
    }
}
