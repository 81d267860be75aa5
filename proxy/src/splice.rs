//! Zero-copy forwarding for links without toxics: `splice(2)` moves bytes socket → pipe → socket inside the
//! kernel, so a bulk transfer through the proxy costs no user-space copy.
//!
//! A link enters this mode only while its chain is empty and it has just read a full chunk (a bulk transfer);
//! it leaves on the first moment of idleness, on a chain change, on end of stream or on close, handing any
//! bytes still in the pipe back to the pipeline in order. Idle and chatty connections therefore never hold a
//! pipe (which would cost two more descriptors per direction).

use std::io::{self, ErrorKind};
use std::os::fd::OwnedFd;

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use tokio::io::Interest;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Pipe capacity asked for; the kernel may grant less (`/proc/sys/fs/pipe-max-size`).
const PIPE_SIZE: i32 = 256 * 1024;

/// A kernel pipe holding bytes between the two splices.
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet spliced out.
    pub pending: usize,
    capacity: usize,
}

impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        let (read, write) =
            nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let capacity =
            fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE)).map_or(64 * 1024, |n| n.max(4096) as usize);
        Ok(Pipe { read, write, pending: 0, capacity })
    }

    /// Moves what the socket has (up to the pipe's room) into the pipe. `Ok(0)` is end of stream;
    /// `WouldBlock` means the socket is drained (readiness is cleared for the next `readable()`).
    pub fn fill(&mut self, src: &OwnedReadHalf) -> io::Result<usize> {
        let room = self.capacity - self.pending;
        let n = src.as_ref().try_io(Interest::READABLE, || {
            splice(
                src.as_ref(),
                None,
                &self.write,
                None,
                room,
                SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK,
            )
            .map_err(io::Error::from)
        })?;
        self.pending += n;
        Ok(n)
    }

    /// Moves pipe contents to the socket. `WouldBlock` means the socket is full.
    pub fn drain(&mut self, dst: &OwnedWriteHalf) -> io::Result<usize> {
        let n = dst.as_ref().try_io(Interest::WRITABLE, || {
            splice(
                &self.read,
                None,
                dst.as_ref(),
                None,
                self.pending,
                SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK,
            )
            .map_err(io::Error::from)
        })?;
        self.pending -= n;
        Ok(n)
    }

    /// Reads what is left in the pipe into memory (the pipe always has it: no waiting).
    pub fn take_rest(&mut self) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; self.pending];
        let mut filled = 0;
        while filled < out.len() {
            match nix::unistd::read(&self.read, &mut out[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        out.truncate(filled);
        self.pending = 0;
        Ok(out)
    }
}

/// Whether zero-copy forwarding is on: it is unless `CHAOS_PROXY_NO_SPLICE` is set (a troubleshooting switch;
/// read once per process).
pub(crate) fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("CHAOS_PROXY_NO_SPLICE").is_none())
}

/// True for errors that only mean "not now".
pub(crate) fn would_block(e: &io::Error) -> bool {
    e.kind() == ErrorKind::WouldBlock
}
