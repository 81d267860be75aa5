//! The tcp probe: a connection to the address must open within the timeout (then it is closed at once).

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Check, ms};
use crate::experiment::model::TcpProbe;
use crate::http::DEFAULT_TIMEOUT;

pub async fn check(spec: &TcpProbe) -> Check {
    let address = spec.address.trim();
    let timeout = spec.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
    let started = Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => {
            let peer = stream.peer_addr().map_or_else(|_| address.to_string(), |a| a.to_string());
            Ok(format!("connected to {peer} in {}", ms(started.elapsed())))
        }
        Ok(Err(e)) => Err(format!("expected a connection to {address}, got: {e}")),
        Err(_) => Err(format!("expected a connection to {address} within {}, got none", ms(timeout))),
    }
}
