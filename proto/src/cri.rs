//! A client of the Kubernetes Container Runtime Interface (`runtime.v1`), the API containerd and CRI-O serve on
//! a node's unix socket (`/run/containerd/containerd.sock`, `/var/run/crio/crio.sock`). Only the calls chaos
//! needs are compiled (`cri/runtime/v1/api.proto`): finding pods, their containers and processes, and (for the
//! tests) creating and removing them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// The generated `runtime.v1` messages and the `RuntimeService` client.
#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

pub use v1::runtime_service_client::RuntimeServiceClient;

/// containerd's socket, where its CRI plugin listens: the default of `chaos agent --cri-socket`.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";

/// A CRI call that failed: which call, on which socket, why.
#[derive(Debug, thiserror::Error)]
#[error("CRI {call} on {}: {reason}", socket.display())]
pub struct CriError {
    pub call: &'static str,
    pub socket: PathBuf,
    pub reason: String,
}

/// A connected `RuntimeService` client on `socket`, with `timeout` on connecting and on each call.
pub async fn connect(socket: &Path, timeout: Duration) -> Result<RuntimeServiceClient<Channel>, CriError> {
    let path = socket.to_path_buf();
    // The URI is never dialled: the connector below opens the unix socket instead.
    let endpoint = Endpoint::from_static("http://cri.invalid").connect_timeout(timeout).timeout(timeout);
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { tokio::net::UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|e| CriError { call: "connect", socket: socket.to_path_buf(), reason: error_chain(&e) })?;
    Ok(RuntimeServiceClient::new(channel).max_decoding_message_size(crate::MAX_MESSAGE_BYTES))
}

/// An error and its sources, joined: tonic's transport errors say little at the top.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
