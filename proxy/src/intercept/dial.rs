//! Upstream dials that interception never catches: sockets marked with [`UPSTREAM_MARK`] before `connect()`,
//! every dial of the process marked once an interception exists, and the `original` upstream.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use tokio::net::{TcpSocket, TcpStream};

use super::UPSTREAM_MARK;
use super::destination::intercepted_destination;

/// Sets [`UPSTREAM_MARK`] on a socket (`SO_MARK`, needs `CAP_NET_ADMIN`), so interception rules skip its
/// connections. Set it before `connect()`: nat decides on the first packet.
pub fn mark_socket<S: AsFd>(socket: &S) -> io::Result<()> {
    setsockopt(socket, sockopt::Mark, &UPSTREAM_MARK).map_err(|e| {
        if e == Errno::EPERM {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "expected CAP_NET_ADMIN to set SO_MARK on the upstream socket (run as root), found EPERM",
            )
        } else {
            io::Error::from(e)
        }
    })
}

/// The upstream value that means "dial where the client meant to go" (read with SO_ORIGINAL_DST): what an
/// intercepting proxy in front of many destinations uses.
pub const ORIGINAL_DESTINATION: &str = "original";

/// Set once an interception is installed in this process: from then on every upstream dial is marked, so no
/// proxy's own traffic is ever redirected back to a proxy (a loop), whichever proxy dials and wherever to.
static MARK_DIALS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks every upstream dial of this process from now on (see [`dial`]).
pub fn mark_upstream_dials() {
    MARK_DIALS.store(true, Ordering::Relaxed);
}

/// Dials an upstream `host:port` the way every proxy in this process does: resolved, each address tried in
/// turn, and marked with [`UPSTREAM_MARK`] once an interception exists.
pub async fn dial(upstream: &str) -> io::Result<TcpStream> {
    if !MARK_DIALS.load(Ordering::Relaxed) {
        return TcpStream::connect(upstream).await;
    }
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, format!("{upstream}: no address"));
    for addr in tokio::net::lookup_host(upstream).await? {
        match connect_marked(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The upstream a client connection goes to: its original destination when `upstream` is
/// [`ORIGINAL_DESTINATION`] (an error when the connection was not redirected: dialing would connect the proxy to
/// itself), else `upstream` itself.
pub async fn dial_for(client: &TcpStream, upstream: &str) -> io::Result<TcpStream> {
    if upstream != ORIGINAL_DESTINATION {
        return dial(upstream).await;
    }
    match intercepted_destination(client)? {
        Some(addr) => connect_marked(addr).await,
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "upstream \"original\" needs an intercepted connection, and this one was not redirected",
        )),
    }
}

/// Connects to `addr` from a socket marked with [`UPSTREAM_MARK`]: the connection interception never catches.
pub async fn connect_marked(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    mark_socket(&socket)?;
    socket.connect(addr).await
}
