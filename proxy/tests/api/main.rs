//! Conformance suite for the admin HTTP API against Toxiproxy 2.12 (the Toxiproxy compatibility reference):
//! every item of the API, proxies and toxics checklist (§16) that is observable over HTTP, plus our extensions.
//!
//! Layout: `routes` (§2, §3: routes, methods, 404/405, headers, guards, `/version`), `errors` (§5: the error
//! catalogue, data-driven, and bind failures), `proxies` (§4, §6: proxy shapes, create, update, delete, reset),
//! `populate` (§6), `toxics` (§4, §6, §8: toxic shapes, create, update, delete, a stalled data path), `extensions`
//! (stats, metrics, ttl, latency distributions, `direction` alias, slicer validation). The router is called
//! in-process; proxies bind real loopback listeners on port 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod errors;
mod extensions;
mod populate;
mod proxies;
mod routes;
mod toxics;
