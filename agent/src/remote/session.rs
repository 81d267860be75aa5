//! One session with the controller: dial, hello, wait for the welcome, send heartbeats (with the EXPIRED
//! statuses of lapsed leases before each), and hand every request to [`super::serving`] until the stream
//! breaks.

use std::sync::Arc;
use std::time::Duration;

use chaos_agent::sample::{self};
use chaos_proto::v1::agent_service_client::AgentServiceClient;
use chaos_proto::v1::controller_message::Body;
use chaos_proto::v1::{
    AgentMessage, ControllerMessage, FaultState, FaultStatus, Heartbeat, HostSample, agent_message,
};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::task::AbortOnDropHandle;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Endpoint;
use tonic::{Code, Request, Status};

use super::identity::Identity;
use super::serving::{Shared, status_message};
use super::{Connector, lock};

/// How long a dial may take to be welcomed before it is abandoned and tried again.
pub(super) const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest heartbeat interval accepted from a welcome: a controller asking for less gets this.
pub(super) const MIN_HEARTBEAT: Duration = Duration::from_millis(50);

/// Messages queued for the controller before senders wait.
pub(super) const OUTBOUND_CAPACITY: usize = 256;

// === one session ===

/// How one session ended.
pub(super) enum Ended {
    /// Refused (UNAUTHENTICATED or PERMISSION_DENIED) before a welcome.
    Refused(Status),
    /// The dial failed, no welcome came, or the stream broke; `welcomed` says whether the session had begun.
    Broken { welcomed: bool, reason: String },
}

/// Dials, says hello, waits for the welcome, then serves requests until the stream breaks.
pub(super) async fn session(
    shared: &Arc<Shared>,
    identity: &Identity,
    endpoint: &Endpoint,
    connect: Option<&Connector>,
    token: Option<&MetadataValue<Ascii>>,
) -> Ended {
    let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let opening = async {
        let channel = match connect {
            None => endpoint.connect().await,
            Some(connect) => {
                let connect = connect.clone();
                let dial = tower::service_fn(move |_: http::Uri| {
                    let opened = connect();
                    async move { opened.await.map(hyper_util::rt::TokioIo::new) }
                });
                endpoint.connect_with_connector(dial).await
            }
        }
        .map_err(|e| Status::unavailable(format!("cannot connect: {}", chain(&e))))?;
        // Built after the dial, so it lists what is held now, not before a slow connect.
        let hello = identity.hello(shared.still_held(), lock(&shared.session_secret).clone());
        let message = AgentMessage { body: Some(agent_message::Body::Hello(hello)) };
        tx.send(message).await.map_err(|_| Status::internal("the outbound queue closed before the hello"))?;
        let mut request = Request::new(ReceiverStream::new(rx));
        if let Some(token) = token {
            request.metadata_mut().insert("authorization", token.clone());
        }
        let mut client = AgentServiceClient::new(channel)
            .max_decoding_message_size(chaos_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(chaos_proto::MAX_MESSAGE_BYTES);
        let mut inbound = client.connect(request).await?.into_inner();
        let first = inbound.message().await?;
        Ok::<_, Status>((inbound, first))
    };
    let broken = |reason: String| Ended::Broken { welcomed: false, reason };
    let (mut inbound, first) = match tokio::time::timeout(WELCOME_TIMEOUT, opening).await {
        Err(_) => return broken(format!("no welcome within {} s", WELCOME_TIMEOUT.as_secs())),
        Ok(Err(status)) if matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied) => {
            return Ended::Refused(status);
        }
        Ok(Err(status)) => return broken(describe(&status)),
        Ok(Ok(opened)) => opened,
    };
    let welcome = match first {
        Some(ControllerMessage { body: Some(Body::Welcome(welcome)), .. }) => welcome,
        Some(other) => return broken(format!("expected a welcome first, found {}", name(&other))),
        None => return broken("the controller ended the stream before its welcome".into()),
    };
    // Proves, at the next dial, that this is the agent of this session (its old stream may be half-dead).
    *lock(&shared.session_secret) = welcome.session_secret.clone();
    let every = Duration::from_millis(welcome.heartbeat_ms).max(MIN_HEARTBEAT);
    tracing::info!(heartbeat_ms = every.as_millis() as u64, "connected to the controller");
    let _heartbeats = AbortOnDropHandle::new(tokio::spawn(heartbeats(shared.clone(), tx.clone(), every)));
    let reason = loop {
        match inbound.message().await {
            Ok(Some(message)) => shared.dispatch(message, &tx),
            Ok(None) => break "the controller ended the stream".to_string(),
            Err(status) => break describe(&status),
        }
    };
    Ended::Broken { welcomed: true, reason }
}

/// Sends a heartbeat every `every`, preceded by an EXPIRED status for each fault whose lease lapsed since the
/// previous one; returns when the stream is gone.
pub(super) async fn heartbeats(shared: Arc<Shared>, tx: mpsc::Sender<AgentMessage>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seq = 0;
    loop {
        ticker.tick().await;
        let (expired, active) = shared.expired();
        for fault_id in expired {
            let detail = "the lease lapsed and the agent reverted the fault".to_string();
            let message = status_message(FaultStatus {
                fault_id,
                state: FaultState::Expired.into(),
                detail,
                ..FaultStatus::default()
            });
            if tx.send(message).await.is_err() {
                return;
            }
        }
        let sampler = shared.clone();
        let sample = tokio::task::spawn_blocking(move || lock(&sampler.sampler).sample_host()).await.ok();
        seq += 1;
        let heartbeat = Heartbeat {
            seq,
            sample: sample.map(host_sample),
            active_faults: u32::try_from(active).unwrap_or(u32::MAX),
        };
        if tx.send(AgentMessage { body: Some(agent_message::Body::Heartbeat(heartbeat)) }).await.is_err() {
            return;
        }
    }
}

pub(super) fn host_sample(sample: sample::HostSample) -> HostSample {
    let load = if sample.cpus > 0 { sample.load1 / sample.cpus as f64 } else { sample.load1 };
    HostSample {
        cpu: sample.cpu,
        memory_used: sample.memory_used,
        load,
        cpus: u32::try_from(sample.cpus).unwrap_or(u32::MAX),
        memory_total_bytes: sample.memory_total_bytes,
    }
}

pub(super) fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// `e` and its sources, joined: a transport error's own message says little (`transport error`).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The kind of a controller message, for errors.
pub(super) fn name(message: &ControllerMessage) -> &'static str {
    match &message.body {
        None => "an empty message",
        Some(Body::Welcome(_)) => "welcome",
        Some(Body::Apply(_)) => "apply",
        Some(Body::Renew(_)) => "renew",
        Some(Body::Revert(_)) => "revert",
        Some(Body::HaltAll(_)) => "halt_all",
        Some(Body::Plan(_)) => "plan",
        Some(Body::RunProbe(_)) => "run_probe",
        Some(Body::ListPods(_)) => "list_pods",
    }
}
