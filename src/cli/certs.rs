//! `chaos certs`: a development CA and certificates for the controller, agents and clients.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct CertsArgs {
    /// Directory to write ca.pem, controller.pem/.key, agent.pem/.key and client.pem/.key into.
    #[arg(long, default_value = "chaos-certs")]
    out: PathBuf,
    /// DNS names and IP addresses for the controller's certificate (repeatable).
    #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
    hosts: Vec<String>,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

/// Generates a development CA and certificates (for tests and trials; use your own PKI in production).
pub fn certs(args: CertsArgs) -> anyhow::Result<()> {
    let certs = chaos_proto::certs::generate(&args.out, &args.hosts, args.days, args.force)?;
    println!("wrote a development CA and certificates to {}", certs.dir.display());
    println!(
        "  controller: --tls-cert {} --tls-key {} [--client-ca {}]",
        certs.controller_cert.display(),
        certs.controller_key.display(),
        certs.ca.display()
    );
    println!(
        "  agent:      --ca {} --cert {} --key {}",
        certs.ca.display(),
        certs.agent_cert.display(),
        certs.agent_key.display()
    );
    println!(
        "  client:     --ca {} --cert {} --key {}",
        certs.ca.display(),
        certs.client_cert.display(),
        certs.client_key.display()
    );
    Ok(())
}
