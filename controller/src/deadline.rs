//! The margin every fault's own deadline allows beyond its planned duration: a constant below both the engine
//! (which gives it to toxics' TTLs and local leases) and the fleet (which gives it to remote leases).

use std::time::Duration;

/// Extra time a fault's deadline allows beyond its planned duration, so the runner's own revert comes first
/// and the deadline is only the safety net.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(10);
