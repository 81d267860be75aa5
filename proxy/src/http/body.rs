//! The body of every response an `http` proxy sends: the upstream's body streamed through frame by frame, or
//! one the proxy made (an injected abort, a 502). It carries the request's [`Tracker`], which records the
//! golden signals when the response ends: at its last frame, at an upstream error, or when hyper drops it
//! because the client went away. gRPC's status is read from the trailers as they pass.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Instant;

use super::rules::Fault;
use super::signals::{LatencyHistogram, MethodClass, Outcome};
use crate::stats::ProxyStats;
use crate::toxics::GrpcCode;

/// Where a response's bytes come from.
pub(crate) enum Source {
    Upstream(Incoming),
    /// A body the proxy made; `None` once sent (or when empty).
    Made(Option<Bytes>),
}

/// A response body that records its request's signals when it ends.
pub(crate) struct ProxyBody {
    source: Source,
    tracker: Option<Tracker>,
}

impl ProxyBody {
    pub fn new(source: Source, tracker: Tracker) -> ProxyBody {
        ProxyBody { source, tracker: Some(tracker) }
    }

    fn finish(&mut self, broken: bool) {
        if let Some(tracker) = self.tracker.take() {
            tracker.finish(if broken { End::Broken } else { End::Complete });
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.source {
            Source::Upstream(body) => Pin::new(body).poll_frame(cx),
            Source::Made(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(tracker)) = (frame.trailers_ref(), this.tracker.as_mut()) {
                    tracker.saw_headers(trailers);
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(true),
            Poll::Ready(None) => this.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Upstream(body) => body.is_end_stream(),
            Source::Made(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Upstream(body) => body.size_hint(),
            Source::Made(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper never polls a body that says it is at its end (a trailers-only gRPC answer, a 204): dropping
        // it is then its normal end. Otherwise the client went away, and the tracker records that itself.
        if self.is_end_stream() {
            self.finish(false);
        }
    }
}

/// How a response ended.
enum End {
    Complete,
    /// The upstream's body failed mid-way (reset, garbage, closed early).
    Broken,
}

// === impl Tracker ===

/// One request's signals, from its arrival to the end of its response. Dropped unfinished (the client went
/// away, during a delay, while the upstream answered, or mid-response), it records the request as abandoned.
pub(crate) struct Tracker {
    stats: Arc<ProxyStats>,
    histogram: Arc<LatencyHistogram>,
    started: Instant,
    method: MethodClass,
    grpc: bool,
    /// The response status, once there is a response.
    status: Option<StatusCode>,
    /// `grpc-status` from the response headers (trailers-only) or trailers.
    grpc_status: Option<GrpcCode>,
    /// The faults applied to this request: their `max_active` slots are held until it ends.
    faults: Vec<Fault>,
    finished: bool,
}

impl Tracker {
    pub fn start(stats: &Arc<ProxyStats>, started: Instant, method: MethodClass, grpc: bool) -> Tracker {
        Tracker {
            histogram: stats.http.started(),
            stats: stats.clone(),
            started,
            method,
            grpc,
            status: None,
            grpc_status: None,
            faults: Vec::new(),
            finished: false,
        }
    }

    pub fn hold(&mut self, faults: Vec<Fault>) {
        self.faults = faults;
    }

    /// The response head is known.
    pub fn responded(&mut self, status: StatusCode, headers: &HeaderMap) {
        self.status = Some(status);
        self.saw_headers(headers);
    }

    fn saw_headers(&mut self, headers: &HeaderMap) {
        if !self.grpc {
            return;
        }
        let code =
            headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u8>().ok());
        if let Some(code) = code {
            // Codes above 16 are not defined; clients treat them as UNKNOWN.
            self.grpc_status = Some(GrpcCode(if code <= 16 { code } else { 2 }));
        }
    }

    fn finish(mut self, end: End) {
        self.finished = true;
        let status = self.status.unwrap_or(StatusCode::BAD_GATEWAY);
        if matches!(end, End::Broken) {
            self.stats.http.upstream_failed();
        }
        let outcome = if self.grpc {
            Outcome::Grpc(self.grpc_status.unwrap_or_else(|| match end {
                End::Broken => GrpcCode(14),
                End::Complete => grpc_code_of_http(status),
            }))
        } else {
            Outcome::Http(self.method, status)
        };
        self.stats.http.finished(&self.histogram, outcome, self.started.elapsed());
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if !self.finished {
            self.stats.http.finished(&self.histogram, Outcome::Abandoned, self.started.elapsed());
        }
    }
}

/// The code a gRPC client reports for a response without `grpc-status`, per the gRPC spec's HTTP mapping.
fn grpc_code_of_http(status: StatusCode) -> GrpcCode {
    GrpcCode(match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        // A 200 without grpc-status is a broken gRPC answer: clients see UNKNOWN (or INTERNAL).
        _ => 2,
    })
}
