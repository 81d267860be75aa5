//! One direction of a proxied connection: reads chunks from its source socket, runs them through the
//! direction's [`Pipeline`], and writes what comes out to the destination socket.
//!
//! A link is one `select!` loop over: connection close, the peer direction ending, a new toxic chain, a write,
//! a toxic deadline, and a read. Every branch is cancel-safe (`write` and `readable` lose nothing when dropped),
//! so a toxic change or a close is taken between two events, never after a blocked write finishes.
//!
//! [`run_links`] runs the two links of one connection; both data planes use it (a `tcp` proxy for each
//! connection, an `http` proxy for the L4 hop of a connection accepted while it has L4 toxics).

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::pipeline::{Activated, Chain, Pipeline};
use crate::shared::ProxyShared;
use crate::splice::{self, Pipe, would_block};
use crate::stats::ProxyStats;
use crate::toxics::{Chunk, Close, Direction, Item};

/// The most one read takes from a socket (Toxiproxy's chunk size).
const READ_SIZE: usize = 32 * 1024;
/// How long a link in zero-copy mode keeps its pipe while the sender pauses.
const SPLICE_IDLE: Duration = Duration::from_millis(20);
/// Reads smaller than this are copied into a right-sized buffer, so queued small chunks hold little memory.
const COPY_BELOW: usize = 4 * 1024;

/// Runs the two links between `client` and `server` (each direction with its chain) until both have ended.
/// Also the L4 layer of an `http` proxy's connections while it has L4 toxics (`server` is then the hop to hyper).
pub(crate) async fn run_links(
    client: TcpStream,
    server: TcpStream,
    half_close: bool,
    shared: Arc<ProxyShared>,
    close: CancellationToken,
) {
    let number = shared.connections.fetch_add(1, Ordering::Relaxed);
    let control = Arc::new(ConnControl {
        close,
        source_done: [CancellationToken::new(), CancellationToken::new()],
        half_close,
        reset: AtomicBool::new(false),
        no_splice: !splice::enabled(),
    });
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let link = |direction: Direction, src, dst| Link {
        direction,
        src,
        dst,
        chain: shared.chains[direction.index()].subscribe(),
        control: control.clone(),
        stats: shared.stats.clone(),
        rng: shared.link_rng(number, direction),
    };
    let up = link(Direction::Upstream, client_read, server_write);
    let down = link(Direction::Downstream, server_read, client_write);
    // Each direction is its own task: a wake-up for one never polls the other, and the two directions of a
    // bulk transfer can run on both cores.
    let down = tokio::spawn(down.run());
    up.run().await;
    let _ = down.await;
}

/// What the two links of one connection share.
pub(crate) struct ConnControl {
    /// Cancelled to close the connection at once: proxy disabled or deleted, a toxic closed it, a write failed.
    pub close: CancellationToken,
    /// Per direction: cancelled when that link must treat its source as ended (the other link closed).
    pub source_done: [CancellationToken; 2],
    /// Propagate a FIN one way only, keeping the other direction open (opt-in; Toxiproxy closes both).
    pub half_close: bool,
    /// Set before `close` is cancelled when the connection is reset: the links then drop their write halves
    /// without the FIN tokio sends on drop, so the peers see only the RST.
    pub reset: AtomicBool,
    /// Disables the zero-copy path (tests use it to compare both paths).
    pub no_splice: bool,
}

pub(crate) struct Link {
    pub direction: Direction,
    pub src: OwnedReadHalf,
    pub dst: OwnedWriteHalf,
    pub chain: watch::Receiver<Chain>,
    pub control: Arc<ConnControl>,
    pub stats: Arc<ProxyStats>,
    pub rng: StdRng,
}

impl Link {
    pub async fn run(mut self) {
        self.drive().await;
        if self.control.reset.load(Ordering::SeqCst) {
            self.dst.forget();
        }
    }

    async fn drive(&mut self) {
        let now = Instant::now();
        let chain = self.chain.borrow_and_update().clone();
        let (mut pipeline, activated) = Pipeline::new(&chain, now, self.rng.clone());
        self.record(&activated);
        let control = self.control.clone();
        let me = self.direction.index();
        let mut source_ended = false;
        // Set when a read filled a whole chunk: a bulk transfer, worth the kernel's zero-copy path.
        let mut bulk = false;
        let splice_enabled = !self.control.no_splice;
        loop {
            // A toxic deadline is never met early: the pipeline is pumped with the real time, so nothing due
            // at `read time + latency` leaves before then. tokio's timer fires on the first 1 ms tick at or
            // after a deadline, so deadlines land in [0, +1 ms] plus wake-up delay; if a wake ever came early,
            // the pump would find nothing due and the link would sleep again until the deadline.
            let wake = match pipeline.pump(Instant::now()) {
                Ok(wake) => wake,
                Err(close) => return self.close(close),
            };
            match self.flush(&mut pipeline) {
                Err(_) => return control.close.cancel(),
                // Writing made room in the output: the stages may move again before we wait.
                Ok(true) => continue,
                Ok(false) => {}
            }
            if let Some(Item::Eof) = pipeline.front() {
                return self.finish().await;
            }
            if bulk && !source_ended && pipeline.is_empty() {
                // A bulk transfer with no toxic: forward in the kernel until it pauses or something changes.
                bulk = false;
                match self.splice_phase(&mut pipeline).await {
                    SpliceEnd::Paused => {}
                    SpliceEnd::Ended => {
                        source_ended = true;
                        pipeline.push(Item::Eof);
                    }
                    SpliceEnd::ChainChanged => {
                        if let Some(close) = self.apply_chain(&mut pipeline) {
                            return self.close(close);
                        }
                    }
                    SpliceEnd::Closed => return,
                    SpliceEnd::Failed => return control.close.cancel(),
                }
                continue;
            }
            let front: Option<Bytes> = match pipeline.front() {
                Some(Item::Data(chunk)) => Some(chunk.data.clone()),
                _ => None,
            };
            let can_read = !source_ended && pipeline.accepts_input();
            let dst = &mut self.dst;
            tokio::select! {
                biased;
                _ = control.close.cancelled() => return,
                _ = control.source_done[me].cancelled(), if !source_ended => {
                    source_ended = true;
                    pipeline.push(Item::Eof);
                }
                changed = self.chain.changed() => {
                    if changed.is_err() {
                        return; // The proxy is gone.
                    }
                    if let Some(close) = self.apply_chain(&mut pipeline) {
                        return self.close(close);
                    }
                }
                written = write_some(dst, front.as_ref()), if front.is_some() => match written {
                    Ok(n) => {
                        self.advance(&mut pipeline, n);
                    }
                    Err(_) => return control.close.cancel(),
                },
                _ = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
                ready = self.src.readable(), if can_read => {
                    match if ready.is_err() { Read::Ended } else { self.read_into(&mut pipeline) } {
                        Read::Ended => {
                            source_ended = true;
                            pipeline.push(Item::Eof);
                        }
                        Read::Full => bulk = splice_enabled,
                        Read::Partial => {}
                    }
                }
            }
        }
    }

    /// Reads one chunk. End of stream and read errors are the same to Toxiproxy: the source is done.
    fn read_into(&mut self, pipeline: &mut Pipeline) -> Read {
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        match self.src.try_read_buf(&mut buf) {
            Ok(0) => Read::Ended,
            Ok(n) => {
                self.stats.received(self.direction, n);
                let data = if n < COPY_BELOW { Bytes::copy_from_slice(&buf) } else { buf.freeze() };
                pipeline.push(Item::Data(Chunk { data, at: Instant::now() }));
                if n == READ_SIZE { Read::Full } else { Read::Partial }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Read::Partial,
            Err(_) => Read::Ended,
        }
    }

    /// Takes the newest chain into the pipeline; returns the close a removed toxic asks for.
    fn apply_chain(&mut self, pipeline: &mut Pipeline) -> Option<Close> {
        let chain = self.chain.borrow_and_update().clone();
        let (close, activated) = pipeline.reconfigure(&chain, Instant::now());
        self.record(&activated);
        close
    }

    /// Forwards with `splice(2)` while the chain is empty and bytes keep coming; whatever is still in the
    /// pipe when it stops goes back to the pipeline as one chunk, in order.
    async fn splice_phase(&mut self, pipeline: &mut Pipeline) -> SpliceEnd {
        let Ok(mut pipe) = Pipe::new() else { return SpliceEnd::Paused };
        let control = self.control.clone();
        let me = self.direction.index();
        let end = loop {
            // A sender that never pauses must still see a close or the other direction's end.
            if control.close.is_cancelled() {
                break SpliceEnd::Closed;
            }
            if control.source_done[me].is_cancelled() {
                break SpliceEnd::Ended;
            }
            if pipe.pending > 0 {
                match pipe.drain(&self.dst) {
                    Ok(n) => {
                        self.stats.sent(self.direction, n);
                        continue;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(_) => break SpliceEnd::Failed,
                }
                tokio::select! {
                    biased;
                    _ = control.close.cancelled() => break SpliceEnd::Closed,
                    changed = self.chain.changed() => {
                        break if changed.is_err() { SpliceEnd::Closed } else { SpliceEnd::ChainChanged };
                    }
                    _ = control.source_done[me].cancelled() => break SpliceEnd::Ended,
                    ready = self.dst.as_ref().writable() => if ready.is_err() { break SpliceEnd::Failed },
                }
                continue;
            }
            if self.chain.has_changed().unwrap_or(true) {
                break SpliceEnd::ChainChanged;
            }
            match pipe.fill(&self.src) {
                Ok(0) => break SpliceEnd::Ended,
                Ok(n) => self.stats.received(self.direction, n),
                Err(e) if would_block(&e) => {
                    // The sender paused: keep the pipe a moment (bulk senders pause often), then give it back.
                    tokio::select! {
                        biased;
                        _ = control.close.cancelled() => break SpliceEnd::Closed,
                        changed = self.chain.changed() => {
                            break if changed.is_err() { SpliceEnd::Closed } else { SpliceEnd::ChainChanged };
                        }
                        _ = control.source_done[me].cancelled() => break SpliceEnd::Ended,
                        _ = tokio::time::sleep(SPLICE_IDLE) => break SpliceEnd::Paused,
                        ready = self.src.readable() => if ready.is_err() { break SpliceEnd::Ended },
                    }
                }
                Err(_) => break SpliceEnd::Ended,
            }
        };
        if pipe.pending > 0
            && let Ok(rest) = pipe.take_rest()
        {
            pipeline.push(Item::Data(Chunk { data: Bytes::from(rest), at: Instant::now() }));
        }
        end
    }

    /// Writes as much of the output as the socket takes without waiting; true if an item left the output.
    fn flush(&mut self, pipeline: &mut Pipeline) -> std::io::Result<bool> {
        let mut emptied = false;
        while let Some(Item::Data(chunk)) = pipeline.front() {
            match self.dst.try_write(&chunk.data) {
                Ok(n) => emptied |= self.advance(pipeline, n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(emptied)
    }

    /// Accounts `n` bytes written from the output's head; true if the head chunk is now fully written.
    fn advance(&mut self, pipeline: &mut Pipeline, n: usize) -> bool {
        self.stats.sent(self.direction, n);
        if let Some(Item::Data(chunk)) = pipeline.front_mut() {
            if n >= chunk.data.len() {
                pipeline.pop_front();
                return true;
            }
            let _ = chunk.data.split_to(n);
        }
        false
    }

    /// The stream ended and everything before the end was written: close the destination.
    async fn finish(&mut self) {
        tokio::select! {
            _ = self.control.close.cancelled() => {}
            _ = tokio::time::timeout(Duration::from_secs(5), self.dst.shutdown()) => {}
        }
        if !self.control.half_close {
            // Toxiproxy semantics: one side ending tears the whole connection down.
            let other = match self.direction {
                Direction::Upstream => Direction::Downstream,
                Direction::Downstream => Direction::Upstream,
            };
            self.control.source_done[other.index()].cancel();
        }
    }

    fn close(&self, close: Close) {
        if close == Close::Reset {
            // Both sockets: this link reads one and writes the other. With linger 0, close sends RST.
            let _ = socket2::SockRef::from(self.src.as_ref()).set_linger(Some(Duration::ZERO));
            let _ = socket2::SockRef::from(self.dst.as_ref()).set_linger(Some(Duration::ZERO));
            self.control.reset.store(true, Ordering::SeqCst);
        }
        self.control.close.cancel();
    }

    fn record(&self, activated: &Activated) {
        for name in activated {
            self.stats.toxic_activated(self.direction, name);
        }
    }
}

/// What one read found.
enum Read {
    /// A whole `READ_SIZE` chunk: more is probably waiting.
    Full,
    /// Less than a chunk, or nothing yet.
    Partial,
    /// End of stream or a read error.
    Ended,
}

/// Why a splice phase stopped.
enum SpliceEnd {
    /// The source has nothing more for now; back to ordinary reads.
    Paused,
    /// The source ended (or the other direction did).
    Ended,
    /// A new chain was published; it must be applied before anything else moves.
    ChainChanged,
    /// The connection is closing, or the proxy is gone.
    Closed,
    /// A write failed: the peer is gone.
    Failed,
}

/// One `write` of the output's head chunk: cancel-safe, so a toxic change is never held up by a slow reader.
async fn write_some(dst: &mut OwnedWriteHalf, data: Option<&Bytes>) -> std::io::Result<usize> {
    match data {
        Some(data) => dst.write(data).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::pipeline::ToxicSpec;
    use crate::toxics::{Latency, ToxicKind};

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// On tokio's paused clock a timer fires exactly at its deadline, so this pins the link's own rule: a
    /// chunk read at `t` is written at `t + latency`, not in the millisecond before (the old `TIMER_LEAD`
    /// released it at `t + latency - 1 ms`).
    #[tokio::test(start_paused = true)]
    async fn a_latency_deadline_is_never_anticipated() {
        let latency = Duration::from_millis(50);
        let (mut sender, source) = pair().await;
        let (destination, mut receiver) = pair().await;
        let (src, _source_write) = source.into_split();
        let (_destination_read, dst) = destination.into_split();
        let spec = ToxicSpec {
            id: 1,
            revision: 1,
            name: "late".into(),
            kind: ToxicKind::Latency(Latency { latency: 50, ..Latency::default() }),
            toxicity: 1.0,
        };
        let (_chain_tx, chain) = watch::channel(Arc::new(vec![spec]));
        let control = Arc::new(ConnControl {
            close: CancellationToken::new(),
            source_done: [CancellationToken::new(), CancellationToken::new()],
            half_close: false,
            reset: AtomicBool::new(false),
            no_splice: true,
        });
        let link = Link {
            direction: Direction::Upstream,
            src,
            dst,
            chain,
            control: control.clone(),
            stats: Arc::new(ProxyStats::default()),
            rng: StdRng::seed_from_u64(1),
        };
        let running = tokio::spawn(link.run());
        for round in 0..20u8 {
            let sent = Instant::now();
            sender.write_all(&[round]).await.unwrap();
            let mut byte = [0u8; 1];
            receiver.read_exact(&mut byte).await.unwrap();
            assert_eq!(byte, [round]);
            let took = sent.elapsed();
            assert!(
                took >= latency,
                "round {round}: delivered after {took:?}, before the {latency:?} latency"
            );
            assert!(took <= latency + Duration::from_millis(1), "round {round}: {took:?} is late");
        }
        control.close.cancel();
        running.await.unwrap();
    }
}
