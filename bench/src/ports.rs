//! Loopback ports for the baselines (HAProxy, noxious) that are told a port instead of reporting the one they
//! bound: a leaf module, so the targets and the baselines they start do not import each other.

use std::net::TcpListener;

use anyhow::{Context, Result};

/// A port on 127.0.0.1 that was free a moment ago (for baselines that cannot report the port they bound).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("probe a free port")?;
    Ok(l.local_addr()?.port())
}
