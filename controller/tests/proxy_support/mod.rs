//! An in-process `chaos proxy` for the controller's tests: its admin API on a loopback port chosen by the
//! kernel, with one proxy in front of a port nothing listens on, so a test checks its toxics against the
//! proxy itself.

#![allow(dead_code, clippy::unwrap_used)]

use chaos_proxy::client::{Client, NewProxy};
use tokio_util::sync::CancellationToken;

/// A `chaos proxy` admin API on `127.0.0.1:0` (seeded with `seed`) holding one proxy called `name`, listening
/// on port 0, whose upstream (`127.0.0.1:9`, discard) is closed. Returns the API URL, a client and the token
/// that stops the server.
pub async fn proxy_server_with(name: &str, seed: u64) -> (String, Client, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = chaos_proxy::Server::new(chaos_proxy::ServerConfig { seed: Some(seed), metrics: false });
    let stop = CancellationToken::new();
    tokio::spawn(chaos_proxy::serve(listener, server, stop.clone().cancelled_owned()));
    let client = Client::new(&url).unwrap();
    let proxy = NewProxy {
        name: name.into(),
        listen: Some("127.0.0.1:0".into()),
        upstream: "127.0.0.1:9".into(),
        enabled: None,
        half_close: None,
    };
    client.create_proxy(&proxy).await.unwrap();
    (url, client, stop)
}

/// [`proxy_server_with`] for the proxy `shop`, seed 7.
pub async fn proxy_server() -> (String, Client, CancellationToken) {
    proxy_server_with("shop", 7).await
}
