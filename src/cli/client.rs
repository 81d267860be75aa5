//! How the controller's clients reach it: `ClientArgs` (URL, token, TLS flags) → a connected gRPC client,
//! gRPC errors worded for people, and the tables' timestamps.

use std::path::PathBuf;

use anyhow::Context;
use chaos_controller::server::default_data_dir;
use chaos_proto::transport::{ClientConfig, WithToken};
use chaos_proto::v1::controller_service_client::ControllerServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// How a client reaches the controller.
#[derive(clap::Args, Clone, Debug)]
pub struct ClientArgs {
    /// The controller's URL (`https://` for TLS).
    #[arg(long, env = "CHAOS_CONTROLLER", value_name = "URL", global = true)]
    pub controller: Option<String>,
    /// API token (else --token-file, else the local controller's DIR/api.token when readable).
    #[arg(long, env = "CHAOS_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// File holding the API token (its first token).
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// CA bundle (PEM) to verify the controller's certificate.
    #[arg(long, value_name = "FILE", global = true)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; with --key.
    #[arg(long, value_name = "FILE", requires = "key", global = true)]
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert", global = true)]
    pub key: Option<PathBuf>,
    /// Name to verify in the controller's certificate when it differs from the URL's host.
    #[arg(long, value_name = "NAME", global = true)]
    pub tls_domain: Option<String>,
}

pub const DEFAULT_CONTROLLER: &str = "http://127.0.0.1:7400";

pub type Client = ControllerServiceClient<InterceptedService<Channel, WithToken>>;

impl ClientArgs {
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(t) = &self.token {
            return Ok(Some(t.clone()));
        }
        let (file, explicit) = match &self.token_file {
            Some(f) => (f.clone(), true),
            None => (default_data_dir().join("api.token"), false),
        };
        match std::fs::read_to_string(&file) {
            Ok(text) => Ok(text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| l.split_whitespace().last().unwrap_or(l).to_string())),
            Err(e) if explicit => Err(e).with_context(|| format!("reading token file {}", file.display())),
            Err(_) => Ok(None),
        }
    }

    /// A connected channel to the controller and the interceptor that adds the token (one attempt), for any
    /// of its services' clients.
    pub async fn channel(&self) -> anyhow::Result<(Channel, WithToken)> {
        let url = self.controller.clone().unwrap_or_else(|| DEFAULT_CONTROLLER.to_string());
        let config = ClientConfig {
            url: url.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            domain: self.tls_domain.clone(),
        };
        let channel = chaos_proto::transport::channel(&config)
            .await
            .with_context(|| format!("connecting to the controller at {url}"))?;
        let token = self.token()?;
        Ok((channel, WithToken::new(token.as_deref())?))
    }

    /// A connected `ControllerService` client (one attempt).
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let (channel, interceptor) = self.channel().await?;
        Ok(ControllerServiceClient::with_interceptor(channel, interceptor)
            .max_decoding_message_size(MAX_REPLY)
            .max_encoding_message_size(MAX_REPLY))
    }
}

/// The largest message a client sends or takes (a run's journal, a game day's experiments).
pub const MAX_REPLY: usize = 64 * 1024 * 1024;

/// A gRPC error for people: the status message, with what to do for the usual ones.
pub fn status_error(what: &str, status: tonic::Status) -> anyhow::Error {
    let hint = match status.code() {
        tonic::Code::Unauthenticated => " (check --token / CHAOS_TOKEN)",
        tonic::Code::PermissionDenied => " (this token may not do that)",
        tonic::Code::Unavailable => " (is the controller running, and is the URL right?)",
        _ => "",
    };
    anyhow::anyhow!("{what}: {}{hint}", status.message())
}

/// A server timestamp (Unix ms) for a table, `-` when unset.
pub fn time(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}
