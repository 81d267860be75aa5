//! `chaos-proxy`: a TCP fault-injection proxy whose admin API is compatible with Toxiproxy 2.x, so existing
//! Toxiproxy clients and CI suites work unchanged, and which goes further: toxics that expire (TTL), latency
//! distributions, live per-proxy stats and Prometheus metrics updated as bytes move, and an HTTP mode
//! (`"protocol": "http"`: HTTP/1.1, HTTP/2 and gRPC) with per-request faults and golden signals.
//!
//! # Layout
//! - [`server`]: the registry of proxies and toxics ([`Server`]); every API operation is a method here.
//! - [`api`]: the HTTP admin API around a [`Server`] ([`api::router`]); [`serve`] runs it on a listener.
//! - [`admin`]: the admin API's HTTP server: header and body deadlines, body size and connection caps.
//! - `proxy`: one proxy's data plane: accept loop, upstream dial, two links per connection.
//! - `shared`: `ProxyShared`, what a proxy's registry entry shares with its data plane (stats, chains, seed).
//! - `link`: one direction of a connection: socket reads → pipeline → socket writes, in one `select!` loop;
//!   `run_links` runs a connection's two links (for both data planes). `hash`: the seed hashing.
//! - `pipeline`: the toxic chain of a link as a pure state machine, reconfigured live without losing bytes.
//! - [`toxics`]: each toxic type's behaviour (`toxics/latency.rs`, …); the attributes, their table and parser
//!   are `chaos-proxy-api`'s, re-exported there.
//! - `http`: the data plane of `http` proxies: hyper serves each connection, requests are forwarded by a pooled
//!   client, L7 toxics (`http_abort`, `http_delay`, `grpc_abort`) apply per request, golden signals are counted.
//! - `stats`: live counters and the Prometheus rendering; [`config`]: `--config` files; [`client`] and
//!   [`model`]: the HTTP client and the API's JSON, re-exported from `chaos-proxy-api`.
//!
//! - [`intercept`]: transparent interception (an nftables REDIRECT table per intercepted port, SO_ORIGINAL_DST,
//!   marked upstream dials, removal of tables left by dead processes).
//!
//! The crate keeps no state on disk: a restarted server starts empty, so no toxic outlives the process that
//! applied it; an interception table outlives a SIGKILLed one only until the next start removes it.

pub mod admin;
pub mod api;
pub mod config;
mod error;
mod hash;
mod http;
pub mod intercept;
mod link;
mod pipeline;
mod proxy;
pub mod server;
mod shared;
mod splice;
mod stats;
pub mod toxics;

/// The admin API's client and JSON model live in `chaos-proxy-api`; these are their old paths.
pub use chaos_proxy_api::{client, model};

use std::future::Future;

pub use crate::http::signals::{HttpSnapshot, RecordsSnapshot, RequestRecord};
pub use error::Error;
pub use server::{Server, ServerConfig};
pub use stats::StatsSnapshot;

/// Serves the admin API on `listener` within the default [`admin::Limits`] until `shutdown` completes, then
/// stops every proxy.
pub async fn serve(
    listener: tokio::net::TcpListener,
    server: Server,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    admin::serve_with(listener, server, shutdown, admin::Limits::default()).await
}
