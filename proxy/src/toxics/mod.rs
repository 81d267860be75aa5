//! Toxics as running stages: what each toxic type does to a link's stream. The types' attributes, their table
//! and their parser live in `chaos-proxy-api` ([`chaos_proxy_api::toxics`]) and are re-exported here, so
//! `chaos_proxy::toxics::ToxicKind` and friends keep their paths.
//!
//! Each live link turns the toxics of its direction into [`Stage`]s: a queue of items plus a [`Behaviour`], a
//! small state machine that decides, given the head of its queue and the time, whether to emit an item, wait
//! until a deadline, or close the connection. Behaviours never do I/O and never sleep, so every toxic is
//! unit-tested on a virtual clock and the link that drives them can react to updates at any moment.
//!
//! The L7 types of `http` proxies (`http_abort`, `http_delay`, `grpc_abort`) act per request, in the http
//! data plane's rule set: they never become stages.

mod bandwidth;
mod latency;
mod limit_data;
mod reset_peer;
mod slicer;
mod slow_close;
mod timeout;

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rand::rngs::StdRng;
use tokio::time::Instant;

pub use chaos_proxy_api::toxics::*;
pub use latency::Sample;
pub use slicer::SliceLengths;

/// Builds a toxic's running state machine: an extension of [`ToxicKind`], which is plain data in the API crate.
pub(crate) trait Build {
    /// The running state machine of this toxic for one link.
    fn behaviour(&self, now: Instant) -> Box<dyn Behaviour>;
}

impl Build for ToxicKind {
    fn behaviour(&self, now: Instant) -> Box<dyn Behaviour> {
        match self {
            // L7 toxics never reach a link (the registry filters them out of the chains); passing bytes
            // through is the only sound behaviour should one ever get there.
            ToxicKind::Noop | ToxicKind::HttpAbort(_) | ToxicKind::HttpDelay(_) | ToxicKind::GrpcAbort(_) => {
                Box::new(Passthrough)
            }
            ToxicKind::Latency(a) => Box::new(latency::LatencyStage::new(a.clone())),
            ToxicKind::Bandwidth(a) => Box::new(bandwidth::BandwidthStage::new(a.clone())),
            ToxicKind::SlowClose(a) => Box::new(slow_close::SlowCloseStage::new(a.clone())),
            ToxicKind::Timeout(a) => Box::new(timeout::TimeoutStage::new(a.clone(), now)),
            ToxicKind::ResetPeer(a) => Box::new(reset_peer::ResetPeerStage::new(a.clone())),
            ToxicKind::Slicer(a) => Box::new(slicer::SlicerStage::new(a.clone())),
            ToxicKind::LimitData(a) => Box::new(limit_data::LimitDataStage::new(a.clone())),
        }
    }
}

/// One piece of a stream moving through a link.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Item {
    /// Bytes read from the source, stamped with when they were read (latency counts from there).
    Data(Chunk),
    /// The source ended: after everything before it is written, the destination is closed.
    Eof,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Chunk {
    pub data: Bytes,
    pub at: Instant,
}

/// How a toxic ends a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Close {
    /// Close both sockets now (FIN); anything still queued is dropped.
    Hard,
    /// Close both sockets with SO_LINGER 0, so both peers see a TCP RST.
    Reset,
}

/// What a behaviour wants next.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    /// Pass this item to the next stage (or the destination).
    Emit(Item),
    /// Nothing to do before this instant (unless new input arrives).
    Wait(Instant),
    /// Nothing to do until new input arrives.
    Idle,
    /// End the connection.
    Close(Close),
}

/// The running state machine of one toxic on one link. Implementations look at the head of `queue` (items that
/// reached this toxic, oldest first) and may pop it.
pub(crate) trait Behaviour: Send {
    fn poll(&mut self, queue: &mut VecDeque<Item>, now: Instant, rng: &mut StdRng) -> Step;

    /// How many items may wait in this toxic's queue before the previous stage is held back.
    fn capacity(&self) -> usize {
        1
    }

    /// Takes new attributes of the same type in place, keeping state that must survive an update
    /// (`limit_data`'s byte count). Returns false when the kind differs and the stage must be rebuilt.
    fn update(&mut self, kind: &ToxicKind) -> bool;

    /// Called while the next stage is full, so deadlines that do not emit (timeout) still fire.
    fn poll_blocked(&mut self, _now: Instant) -> Step {
        Step::Idle
    }

    /// What removing this toxic from a live link does to the connection (`timeout` closes it).
    fn on_remove(&self) -> Option<Close> {
        None
    }
}

/// `noop`, and any toxic whose toxicity roll did not select this link.
pub(crate) struct Passthrough;

impl Behaviour for Passthrough {
    fn poll(&mut self, queue: &mut VecDeque<Item>, _now: Instant, _rng: &mut StdRng) -> Step {
        queue.pop_front().map_or(Step::Idle, Step::Emit)
    }

    fn capacity(&self) -> usize {
        1
    }

    fn update(&mut self, kind: &ToxicKind) -> bool {
        matches!(kind, ToxicKind::Noop)
    }
}

/// Rolls toxicity: true when this link should apply the toxic (Toxiproxy: `rand.Float32() < toxicity`).
pub(crate) fn roll(toxicity: f32, rng: &mut StdRng) -> bool {
    rng.random::<f32>() < toxicity
}

/// Milliseconds from the API (negative clamps to zero) as a duration.
pub(crate) fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Drives one behaviour on a virtual clock for unit tests.
    use super::*;
    use rand::SeedableRng;

    pub fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    pub fn data(s: &str, at: Instant) -> Item {
        Item::Data(Chunk { data: Bytes::copy_from_slice(s.as_bytes()), at })
    }

    /// Polls until the behaviour waits or idles, collecting what it emitted.
    pub fn drain(
        b: &mut dyn Behaviour,
        q: &mut VecDeque<Item>,
        now: Instant,
        rng: &mut StdRng,
    ) -> (Vec<Item>, Step) {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            match b.poll(q, now, rng) {
                Step::Emit(item) => out.push(item),
                other => return (out, other),
            }
        }
        panic!("behaviour never stopped emitting");
    }

    pub fn text(items: &[Item]) -> String {
        items
            .iter()
            .map(|i| match i {
                Item::Data(c) => String::from_utf8_lossy(&c.data).into_owned(),
                Item::Eof => "<eof>".into(),
            })
            .collect()
    }
}
