//! The original destination of an intercepted connection: where its client meant to go before the REDIRECT,
//! read from conntrack (`SO_ORIGINAL_DST`), and telling a redirected connection from one that came straight.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use nix::errno::Errno;
use nix::sys::socket::{getsockopt, sockopt};
use tokio::net::TcpStream;

/// Where the client of an intercepted connection meant to go: the destination before the REDIRECT, from
/// conntrack (`SO_ORIGINAL_DST` for IPv4, also on a dual-stack socket; `IP6T_SO_ORIGINAL_DST` for IPv6).
///
/// A connection that was not redirected has its own local address as original destination, and one conntrack
/// does not know about (`nf_conntrack` not loaded, or no NAT at all) fails with `NotFound`: see
/// [`intercepted_destination`].
pub fn original_destination(stream: &TcpStream) -> io::Result<SocketAddr> {
    let local = stream.local_addr()?;
    let v4 = match local {
        SocketAddr::V4(_) => true,
        SocketAddr::V6(addr) => addr.ip().to_ipv4_mapped().is_some(),
    };
    let no_entry = |e: Errno| {
        if e == Errno::ENOENT {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "expected a conntrack entry for the connection to {local}, found none (not redirected)"
                ),
            )
        } else {
            io::Error::from(e)
        }
    };
    if v4 {
        let raw = getsockopt(stream, sockopt::OriginalDst).map_err(no_entry)?;
        let ip = Ipv4Addr::from(u32::from_be(raw.sin_addr.s_addr));
        Ok(SocketAddr::from((ip, u16::from_be(raw.sin_port))))
    } else {
        let raw = getsockopt(stream, sockopt::Ip6tOriginalDst).map_err(no_entry)?;
        let ip = Ipv6Addr::from(raw.sin6_addr.s6_addr);
        let port = u16::from_be(raw.sin6_port);
        Ok(SocketAddr::V6(SocketAddrV6::new(ip, port, raw.sin6_flowinfo, raw.sin6_scope_id)))
    }
}

/// The original destination of a redirected connection, `None` when the connection was not redirected (it
/// came straight to the listener): dialing that would connect the proxy to itself.
pub fn intercepted_destination(stream: &TcpStream) -> io::Result<Option<SocketAddr>> {
    let local = stream.local_addr()?;
    match original_destination(stream) {
        Ok(original) if canonical(original) == canonical(local) => Ok(None),
        Ok(original) => Ok(Some(original)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
