//! [`ProxyShared`]: the state one proxy's registry entry shares with its data plane (statistics, the toxic
//! chain per direction, the L7 rule set, the seed and the connection and request counters). Both data planes
//! (`proxy.rs` for `tcp`, `http/` for `http`) read it; neither imports the other to get it.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::watch;

use crate::hash::splitmix;
use crate::http::rules::RuleSet;
use crate::pipeline::Chain;
use crate::stats::ProxyStats;
use crate::toxics::Direction;

/// What the data plane of one proxy shares with the registry.
pub(crate) struct ProxyShared {
    pub name: String,
    pub stats: Arc<ProxyStats>,
    /// The toxic chain per direction; every live link watches its direction's channel.
    pub chains: [watch::Sender<Chain>; 2],
    /// The L7 toxics of an `http` proxy; each request reads the newest set.
    pub rules: watch::Sender<RuleSet>,
    /// Seeds each link's random generator (toxicity rolls, jitter, slicer) and each request's, so `--seed`
    /// replays a run.
    pub seed: u64,
    /// Numbers connections, for per-link seeds.
    pub connections: AtomicU64,
    /// Numbers the requests of an `http` proxy, for per-request seeds.
    pub requests: AtomicU64,
}

impl ProxyShared {
    pub fn new(name: String, seed: u64) -> ProxyShared {
        let empty: Chain = Arc::new(Vec::new());
        ProxyShared {
            name,
            stats: Arc::new(ProxyStats::default()),
            chains: [watch::Sender::new(empty.clone()), watch::Sender::new(empty)],
            rules: watch::Sender::new(Arc::new(Vec::new())),
            seed,
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// The random generator of one link: a function of the proxy seed, the connection number and the direction.
    pub fn link_rng(&self, connection: u64, direction: Direction) -> StdRng {
        StdRng::seed_from_u64(splitmix(self.seed ^ splitmix(connection * 2 + direction.index() as u64)))
    }
}
