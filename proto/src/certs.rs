//! `chaos certs`: a development CA and the controller, agent and client certificates it signs, generated in
//! pure Rust with rcgen. For trying TLS and mutual TLS on a laptop or a test fleet, not for production PKI:
//! there is no revocation, no renewal and the CA key sits next to the certificates.

use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// How far back certificates are valid from, so that a host whose clock is a little behind the one that
/// generated them still accepts them.
const CLOCK_SKEW: time::Duration = time::Duration::hours(1);

/// The files `chaos certs` writes into a directory, all PEM: `ca.pem` and `ca.key` (the development CA),
/// `controller.pem`/`.key` (server certificate, subject alternative names from the hosts asked for),
/// `agent.pem`/`.key` and `client.pem`/`.key` (client certificates, common names `agent` and `client`).
/// Private keys are written readable by their owner only (0600).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevCerts {
    /// The directory holding every file below.
    pub dir: PathBuf,
    /// The CA certificate: what the controller trusts for client certificates (`--client-ca`) and what
    /// agents and the CLI trust for the controller (`--ca`).
    pub ca: PathBuf,
    /// The CA's private key, kept so more certificates can be signed by hand (`openssl x509 -CA`).
    pub ca_key: PathBuf,
    /// The controller's server certificate.
    pub controller_cert: PathBuf,
    /// The controller's private key.
    pub controller_key: PathBuf,
    /// A client certificate for agents (common name `agent`).
    pub agent_cert: PathBuf,
    /// The agents' private key.
    pub agent_key: PathBuf,
    /// A client certificate for the CLI and CI (common name `client`).
    pub client_cert: PathBuf,
    /// The CLI's private key.
    pub client_key: PathBuf,
}

/// Why certificates could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file to be written exists and `force` was not given; nothing was written.
    #[error("{} exists (pass --force to overwrite it); nothing was written", path.display())]
    Exists {
        /// The first existing file.
        path: PathBuf,
    },
    /// No host names or addresses for the controller's certificate.
    #[error("expected at least one host name or IP address for the controller certificate, found none")]
    NoHosts,
    /// A host that cannot go into a certificate.
    #[error(
        "invalid host {host:?} for the controller certificate: expected a DNS name (letters, digits, '-', '.') \
         or an IP address"
    )]
    Host {
        /// The host as given.
        host: String,
    },
    /// A validity of zero days.
    #[error("expected a validity of at least 1 day, found {days}")]
    Days {
        /// The validity asked for.
        days: u32,
    },
    /// rcgen refused to build or sign a certificate.
    #[error("generating the {what} certificate: {source}")]
    Generate {
        /// Which certificate (`CA`, `controller`, `agent`, `client`).
        what: &'static str,
        /// rcgen's reason.
        #[source]
        source: rcgen::Error,
    },
    /// Creating the directory or writing a file failed.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
}

/// Generates a development CA, valid for `days` days (callers default to 365), and three leaf certificates
/// signed by it, into `dir` (created if missing). `hosts` are the DNS names and IP addresses the controller
/// is reached by (callers default to `localhost`, `127.0.0.1` and `::1`). Refuses to overwrite any existing
/// file unless `force`; in that case nothing is written.
pub fn generate(dir: &Path, hosts: &[String], days: u32, force: bool) -> Result<DevCerts, CertError> {
    let certs = DevCerts::in_dir(dir);
    let pems = generate_pems(hosts, days)?;
    if !force && let Some(path) = certs.files().into_iter().find(|path| path.exists()) {
        return Err(CertError::Exists { path: path.to_path_buf() });
    }
    fs::create_dir_all(dir).map_err(|source| CertError::Io { path: dir.to_path_buf(), source })?;
    for (path, pem) in certs.files().into_iter().zip(&pems) {
        let secret = path.extension().is_some_and(|ext| ext == "key");
        write_file(path, pem.as_bytes(), secret, force)
            .map_err(|source| CertError::Io { path: path.to_path_buf(), source })?;
    }
    Ok(certs)
}

// === impl DevCerts ===

impl DevCerts {
    /// The file names `generate` uses in `dir` (whether or not they exist).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            controller_cert: dir.join("controller.pem"),
            controller_key: dir.join("controller.key"),
            agent_cert: dir.join("agent.pem"),
            agent_key: dir.join("agent.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }

    /// Every file, each certificate followed by its key, in the order of [`generate_pems`].
    fn files(&self) -> [&Path; 8] {
        [
            &self.ca,
            &self.ca_key,
            &self.controller_cert,
            &self.controller_key,
            &self.agent_cert,
            &self.agent_key,
            &self.client_cert,
            &self.client_key,
        ]
    }
}

/// The PEM text of every file, in the order of [`DevCerts::files`]; everything is generated before anything is
/// written so that a bad host leaves no half-written directory behind.
fn generate_pems(hosts: &[String], days: u32) -> Result<[String; 8], CertError> {
    if days == 0 {
        return Err(CertError::Days { days });
    }
    if hosts.is_empty() {
        return Err(CertError::NoHosts);
    }
    for host in hosts {
        check_host(host)?;
    }
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - CLOCK_SKEW;
    let not_after = now + time::Duration::days(i64::from(days));

    let ca_err = |source| CertError::Generate { what: "CA", source };
    let ca_key = KeyPair::generate().map_err(ca_err)?;
    let mut ca_params = CertificateParams::default();
    // Each CA gets its own name (from its key) so that a certificate from an earlier `chaos certs` run is
    // reported as signed by an unknown CA, not as one with a bad signature from a CA of the same name.
    let id: String = ca_params.key_identifier(&ca_key).iter().take(4).map(|b| format!("{b:02x}")).collect();
    ca_params.distinguished_name.remove(DnType::CommonName);
    ca_params.distinguished_name.push(DnType::CommonName, format!("chaos development CA {id}"));
    ca_params.distinguished_name.push(DnType::OrganizationName, "chaos");
    // The CA signs leaves directly: no intermediates below it.
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(ca_err)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |what: &'static str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let err = |source| CertError::Generate { what, source };
        let mut params = CertificateParams::new(sans).map_err(err)?;
        params.distinguished_name.remove(DnType::CommonName);
        params.distinguished_name.push(DnType::CommonName, what);
        params.distinguished_name.push(DnType::OrganizationName, "chaos");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().map_err(err)?;
        let cert = params.signed_by(&key, &issuer).map_err(err)?;
        Ok::<_, CertError>((cert.pem(), key.serialize_pem()))
    };
    let controller = leaf("controller", hosts.to_vec(), ExtendedKeyUsagePurpose::ServerAuth)?;
    let agent = leaf("agent", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)?;
    let client = leaf("client", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)?;
    Ok([ca_cert.pem(), ca_key_pem, controller.0, controller.1, agent.0, agent.1, client.0, client.1])
}

/// Rejects what rcgen would take but no TLS client could match: empty names, spaces, non-ASCII.
fn check_host(host: &str) -> Result<(), CertError> {
    let dns_name = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'*'));
    if dns_name || host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    Err(CertError::Host { host: host.to_string() })
}

/// Writes `contents` to `path`: a secret is created readable by its owner only, and its mode is set again
/// before anything is written in case `force` replaced a file that was more open. (Unix only, like the
/// whole workspace.)
fn write_file(path: &Path, contents: &[u8], secret: bool, force: bool) -> io::Result<()> {
    let mode = if secret { 0o600 } else { 0o644 };
    let mut options = fs::OpenOptions::new();
    options.write(true).mode(mode);
    if force {
        options.create(true).truncate(true);
    } else {
        // Without `force` a file that appeared since the check in `generate` is still not overwritten.
        options.create_new(true);
    }
    let mut file = options.open(path)?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()
}
