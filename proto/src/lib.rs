//! `chaos-proto`: the `chaos.v1` gRPC services shared by the controller and its agents, generated at build time
//! from `chaos/v1/*.proto` by protox + tonic-prost-build (no system `protoc`). Only this crate is shared between
//! the controller and the agent; each converts these types to its own at the boundary.
//!
//! - [`v1::agent_service_client`] / [`v1::agent_service_server`]: the `Connect` stream an agent dials.
//! - [`v1::controller_service_client`] / [`v1::controller_service_server`]: the API for people and CI.
//! - [`cri`]: a client of the Kubernetes Container Runtime Interface (`runtime.v1`) on a node's runtime
//!   socket, for the agent's pod targets.
//! - [`transport`]: dialling a controller (TLS, mutual TLS, bearer token) and checking tokens on the server.

pub mod certs;
pub mod cri;
pub mod transport;

/// The generated `chaos.v1` messages, clients and servers.
#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub mod v1 {
    tonic::include_proto!("chaos.v1");
}

/// The largest message either side accepts by default (experiments are text files; 4 MiB is generous).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Checks an agent id (a hello's, an experiment's `agent:`): what the store, logs and selectors can hold
/// safely.
pub fn check_agent_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err(format!("agent id must be 1 to 128 characters, found {}", id.len()));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))) {
        return Err(format!("agent id {id:?} has {c:?}: use letters, digits, '-', '_', '.' and ':'"));
    }
    Ok(())
}
