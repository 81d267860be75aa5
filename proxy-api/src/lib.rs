//! `chaos-proxy-api`: the Toxiproxy-compatible admin API as data, for the programs that talk to a proxy
//! without running one (the controller, the CLI) and for the proxy server itself.
//!
//! # Layout
//! - [`client`]: a typed async HTTP client for any Toxiproxy-compatible server (`chaos proxy` or Toxiproxy 2.x),
//!   with its wire types ([`client::NewToxic`], [`client::Proxy`], …).
//! - [`model`]: the API's JSON as the server reads (`*Input`) and shows (`*View`) it.
//! - [`toxics`]: each toxic type's attributes ([`toxics::ToxicKind`]), described once as data
//!   ([`toxics::Field`]) and parsed by one merge ([`toxics::ToxicKind::merged`]) that the server and the
//!   experiment format both use.
//!
//! Not here: sockets that carry proxied traffic, the running toxic stages, the registry of proxies: those are
//! the server's (`chaos-proxy`), which depends on this crate and re-exports it at its old paths.

pub mod client;
pub mod model;
pub mod toxics;
