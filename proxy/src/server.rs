//! The proxy registry behind the admin API: create, update, delete, populate and reset proxies; add, update
//! and remove toxics; TTL expiry. Every operation takes one async lock, so API calls are serialised as in
//! Toxiproxy; the data path never takes it (links only watch their chain, requests read the L7 rule set), so a
//! stalled connection can never hold up an API call.
//!
//! An `http` proxy keeps every toxic in the same two per-direction lists as a `tcp` one (so views, names,
//! TTLs and updates work alike), but publishes them split: L4 toxics to the links' chains, L7 toxics
//! (`http_abort`, `http_delay`, `grpc_abort`) to the request rule set. L7 toxics are refused on `tcp` proxies,
//! and a proxy that has some cannot be switched to `tcp`.
//!
//! A proxy created with `lease_ms` deletes itself when its lease lapses (listener closed, connections ended),
//! unless an update with `lease_ms` renewed it: whoever creates a proxy for a while (a `chaos run`) renews it
//! while it runs, and a creator that dies cannot leave it behind.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::error::{Error, Result};
use crate::hash::{fnv, splitmix};
use crate::http::rules;
use crate::http::signals::checked_bounds;
use crate::model::{Protocol, ProxyInput, ProxyUpdate, ProxyView, ToxicInput, ToxicUpdate, ToxicView};
use crate::pipeline::{Chain, ToxicSpec};
use crate::proxy::{Route, Running, resolve_listen};
use crate::shared::ProxyShared;
use crate::stats::{MetricsSource, StatsSnapshot, render_prometheus};
use crate::toxics::{Direction, ToxicKind};

/// Most proxies one `/populate` (or config file) may hold: it runs under the registry lock, which every API
/// call waits for.
pub const MAX_POPULATE: usize = 1000;
/// Populate stops (answering what it did so far) once this has passed, well inside the API's 25 s handler
/// deadline, so the client gets an answer rather than Toxiproxy's empty 503.
const POPULATE_DEADLINE: Duration = Duration::from_secs(20);

/// How the server runs.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    /// Seeds every random choice (toxicity rolls, jitter, slicer sizes); random when absent.
    pub seed: Option<u64>,
    /// Serve `/metrics` (Toxiproxy serves it only with `-proxy-metrics`).
    pub metrics: bool,
}

/// The proxy server: cheap to clone, shared by the API handlers.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServerConfig,
    seed: u64,
    proxies: Mutex<BTreeMap<String, ProxyEntry>>,
    /// Parent of every proxy's listener and connections; cancelled by [`Server::shutdown`].
    shutdown: CancellationToken,
    /// Source of toxic ids and TTL generations, unique for the server's life.
    ids: AtomicU64,
}

/// One proxy's configuration and, when enabled, its running listener.
struct ProxyEntry {
    shared: Arc<ProxyShared>,
    /// The address as given, or the bound address while running (what the API reports).
    listen: String,
    upstream: String,
    enabled: bool,
    half_close: bool,
    protocol: Protocol,
    /// Extra latency histogram bounds (ms), sorted, as registered.
    latency_buckets: Vec<f64>,
    toxics: [Vec<ToxicEntry>; 2],
    running: Option<Running>,
    /// Non-zero while the proxy is down with a TTL: identifies the timer that may re-enable it.
    down_generation: u64,
    /// The lease the proxy was created or last renewed with; `None` for a proxy that lives until deleted.
    lease: Option<Duration>,
    /// Identifies the lease timer armed last; an older timer firing finds a different value and does nothing.
    lease_generation: u64,
    /// Who created the proxy, as the creator said (opaque here, shown back).
    owner: Option<String>,
}

#[derive(Clone)]
struct ToxicEntry {
    spec: ToxicSpec,
    /// The `stream` text as the client sent it, shown back unchanged.
    stream: String,
    ttl: Option<Duration>,
    /// Identifies the TTL timer armed last; an older timer firing finds a different value and does nothing.
    ttl_generation: u64,
}

impl Server {
    pub fn new(config: ServerConfig) -> Server {
        let seed = config.seed.unwrap_or_else(rand::random);
        Server {
            inner: Arc::new(Inner {
                config,
                seed,
                proxies: Mutex::new(BTreeMap::new()),
                shutdown: CancellationToken::new(),
                ids: AtomicU64::new(1),
            }),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    fn next_id(&self) -> u64 {
        self.inner.ids.fetch_add(1, Relaxed)
    }

    /// Every proxy, keyed by name.
    pub async fn proxies(&self) -> BTreeMap<String, ProxyView> {
        let proxies = self.inner.proxies.lock().await;
        proxies.iter().map(|(name, entry)| (name.clone(), entry.view())).collect()
    }

    pub async fn proxy(&self, name: &str) -> Result<ProxyView> {
        let proxies = self.inner.proxies.lock().await;
        proxies.get(name).map(ProxyEntry::view).ok_or(Error::ProxyNotFound)
    }

    pub async fn create_proxy(&self, input: ProxyInput) -> Result<ProxyView> {
        let (name, upstream) = required(&input, None)?;
        let options = options(&input, None)?;
        let mut proxies = self.inner.proxies.lock().await;
        if proxies.contains_key(&name) {
            return Err(Error::ProxyExists);
        }
        let entry = self.new_entry(name.clone(), upstream, &input, options).await?;
        let view = entry.view();
        info!(proxy = %name, listen = %entry.listen, upstream = %entry.upstream, "proxy created");
        proxies.insert(name, entry);
        Ok(view)
    }

    async fn new_entry(
        &self,
        name: String,
        upstream: String,
        input: &ProxyInput,
        (protocol, latency_buckets): (Protocol, Vec<f64>),
    ) -> Result<ProxyEntry> {
        let seed = splitmix(self.inner.seed ^ fnv(&name));
        let shared = Arc::new(ProxyShared::new(name, seed));
        shared.stats.http.set_extra_bounds(&latency_buckets);
        let mut entry = ProxyEntry {
            shared,
            listen: input.listen.clone().unwrap_or_default(),
            upstream,
            enabled: false,
            half_close: input.half_close.unwrap_or(false),
            protocol,
            latency_buckets,
            toxics: [Vec::new(), Vec::new()],
            running: None,
            down_generation: 0,
            lease: input.lease_ms.map(Duration::from_millis),
            lease_generation: 0,
            owner: input.owner.clone(),
        };
        if input.enabled.unwrap_or(true) {
            entry.start(&self.inner.shutdown).await?;
        }
        if let Some(lease) = entry.lease {
            entry.lease_generation = self.next_id();
            self.arm_lease(&entry.shared.name, entry.lease_generation, lease);
        }
        Ok(entry)
    }

    /// Partial update: a changed listen (after resolution), upstream or protocol restarts the proxy, closing
    /// its connections; `enabled` starts or stops it. Toxics survive. A failed bind leaves the proxy as it was.
    /// `latency_buckets_ms` replaces the extra histogram bounds without a restart.
    pub async fn update_proxy(&self, name: &str, update: ProxyUpdate) -> Result<ProxyView> {
        let mut proxies = self.inner.proxies.lock().await;
        let entry = proxies.get_mut(name).ok_or(Error::ProxyNotFound)?;
        let lease = checked_lease(update.lease_ms).map_err(Error::BadRequest)?;
        let protocol = match &update.protocol {
            Some(text) => Protocol::parse(text).map_err(Error::BadRequest)?,
            None => entry.protocol,
        };
        if protocol == Protocol::Tcp && entry.toxics.iter().flatten().any(|t| t.spec.kind.is_l7()) {
            return Err(Error::BadRequest(format!(
                "protocol: expected \"http\" while proxy {name} has http toxics \
                 (remove them first), found \"tcp\""
            )));
        }
        let latency_buckets = match &update.latency_buckets_ms {
            Some(bounds) => checked_bounds(bounds).map_err(Error::BadRequest)?,
            None => entry.latency_buckets.clone(),
        };
        let listen = update.listen.clone().unwrap_or_else(|| entry.listen.clone());
        let upstream = update.upstream.clone().unwrap_or_else(|| entry.upstream.clone());
        let enabled = update.enabled.unwrap_or(entry.enabled);
        let half_close = update.half_close.unwrap_or(entry.half_close);
        let listen_changed = listen != entry.listen && !same_address(&listen, &entry.listen).await;
        let restart = listen_changed
            || upstream != entry.upstream
            || half_close != entry.half_close
            || protocol != entry.protocol;
        let previous =
            (entry.listen.clone(), entry.upstream.clone(), entry.half_close, entry.protocol, entry.enabled);
        if restart || !enabled {
            entry.stop().await;
        }
        entry.listen = listen;
        entry.upstream = upstream;
        entry.half_close = half_close;
        entry.protocol = protocol;
        if enabled
            && entry.running.is_none()
            && let Err(e) = entry.start(&self.inner.shutdown).await
        {
            // Put the old configuration back, running again if it was.
            (entry.listen, entry.upstream, entry.half_close, entry.protocol, entry.enabled) = previous;
            if entry.enabled {
                entry.enabled = false;
                let _ = entry.start(&self.inner.shutdown).await;
            }
            return Err(e);
        }
        entry.shared.stats.http.set_extra_bounds(&latency_buckets);
        entry.latency_buckets = latency_buckets;
        if !enabled && let Some(ttl) = update.ttl {
            entry.down_generation = self.next_id();
            self.arm_reenable(name, entry.down_generation, Duration::from_millis(ttl));
        } else if enabled {
            entry.down_generation = 0;
        }
        if let Some(lease) = lease {
            // A renewal: the lease runs from now, and the timer armed before it no longer counts.
            entry.lease = Some(lease);
            entry.lease_generation = self.next_id();
            self.arm_lease(name, entry.lease_generation, lease);
        }
        Ok(entry.view())
    }

    /// Deletes a leased proxy at its deadline, unless it was renewed, deleted or replaced since.
    fn arm_lease(&self, proxy: &str, generation: u64, lease: Duration) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let proxy = proxy.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(lease).await;
            let Some(inner) = weak.upgrade() else { return };
            let mut proxies = inner.proxies.lock().await;
            if proxies.get(&proxy).is_none_or(|entry| entry.lease_generation != generation) {
                return;
            }
            if let Some(mut entry) = proxies.remove(&proxy) {
                entry.stop().await;
                info!(proxy = %proxy, lease_ms = lease.as_millis(), owner = entry.owner.as_deref().unwrap_or(""),
                    "proxy lease lapsed: proxy deleted");
            }
        });
    }

    /// Re-enables a proxy disabled with a TTL at its deadline, unless it was changed since.
    fn arm_reenable(&self, proxy: &str, generation: u64, ttl: Duration) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let proxy = proxy.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            let Some(inner) = weak.upgrade() else { return };
            let mut proxies = inner.proxies.lock().await;
            let Some(entry) = proxies.get_mut(&proxy) else { return };
            if entry.down_generation == generation && entry.running.is_none() {
                entry.down_generation = 0;
                match entry.start(&inner.shutdown).await {
                    Ok(()) => info!(proxy = %proxy, "proxy re-enabled at its ttl"),
                    Err(e) => {
                        tracing::warn!(proxy = %proxy, error = %e, "could not re-enable the proxy at its ttl")
                    }
                }
            }
        });
    }

    pub async fn delete_proxy(&self, name: &str) -> Result<()> {
        let mut proxies = self.inner.proxies.lock().await;
        let mut entry = proxies.remove(name).ok_or(Error::ProxyNotFound)?;
        entry.stop().await;
        info!(proxy = %name, "proxy deleted");
        Ok(())
    }

    /// Creates or replaces many proxies: validates every entry first; an entry identical in name, listen and
    /// upstream to an existing proxy keeps that proxy untouched; a differing one replaces it, without toxics.
    /// On failure returns the error with the proxies handled so far. At most [`MAX_POPULATE`] proxies, and
    /// it stops after 20 s.
    pub async fn populate(
        &self,
        inputs: Vec<ProxyInput>,
    ) -> std::result::Result<Vec<ProxyView>, (Error, Vec<ProxyView>)> {
        let deadline = tokio::time::Instant::now() + POPULATE_DEADLINE;
        if inputs.len() > MAX_POPULATE {
            let message =
                format!("populate: expected at most {MAX_POPULATE} proxies, found {}", inputs.len());
            return Err((Error::TooLarge(message), Vec::new()));
        }
        let mut checked = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let (name, upstream) = required(input, Some(i + 1)).map_err(|e| (e, Vec::new()))?;
            let options = options(input, Some(i + 1)).map_err(|e| (e, Vec::new()))?;
            checked.push((name, upstream, options));
        }
        let mut proxies = self.inner.proxies.lock().await;
        let mut done = Vec::with_capacity(inputs.len());
        for (input, (name, upstream, options)) in inputs.iter().zip(checked) {
            if tokio::time::Instant::now() > deadline {
                let message = format!(
                    "populate: stopped at its {} s deadline after {} of {} proxies",
                    POPULATE_DEADLINE.as_secs(),
                    done.len(),
                    inputs.len()
                );
                return Err((Error::Deadline(message), done));
            }
            if let Some(existing) = proxies.get_mut(&name) {
                let listen = input.listen.clone().unwrap_or_default();
                if existing.upstream == upstream
                    && existing.protocol == options.0
                    && same_address(&listen, &existing.listen).await
                {
                    // Bounds given with an otherwise identical proxy apply in place, like an update.
                    if input.latency_buckets_ms.is_some() {
                        existing.shared.stats.http.set_extra_bounds(&options.1);
                        existing.latency_buckets = options.1;
                    }
                    done.push(existing.view());
                    continue;
                }
            }
            // The old proxy must release its address before the new one binds, but it is only dropped
            // once the new one runs: if that fails, the old one is restarted as it was.
            let old_was_enabled = match proxies.get_mut(&name) {
                Some(old) => {
                    let was = old.enabled;
                    old.stop().await;
                    Some(was)
                }
                None => None,
            };
            match self.new_entry(name.clone(), upstream, input, options).await {
                Ok(entry) => {
                    done.push(entry.view());
                    proxies.insert(name, entry);
                }
                Err(e) => {
                    if let (Some(true), Some(old)) = (old_was_enabled, proxies.get_mut(&name)) {
                        let _ = old.start(&self.inner.shutdown).await;
                    }
                    return Err((e, done));
                }
            }
        }
        Ok(done)
    }

    /// Re-enables every proxy and removes every toxic, both directions; deletes nothing.
    /// Every toxic goes first (that cannot fail); then every disabled proxy is started, and the first bind
    /// error, if any, is reported after all were tried, so one unbindable proxy never leaves toxics behind.
    pub async fn reset(&self) -> Result<()> {
        let mut proxies = self.inner.proxies.lock().await;
        for entry in proxies.values_mut() {
            entry.toxics = [Vec::new(), Vec::new()];
            entry.publish(Direction::Upstream);
            entry.publish(Direction::Downstream);
        }
        let mut first_error = None;
        for entry in proxies.values_mut() {
            if entry.running.is_none()
                && let Err(e) = entry.start(&self.inner.shutdown).await
            {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub async fn toxics(&self, proxy: &str) -> Result<Vec<ToxicView>> {
        let proxies = self.inner.proxies.lock().await;
        Ok(proxies.get(proxy).ok_or(Error::ProxyNotFound)?.toxic_views())
    }

    pub async fn toxic(&self, proxy: &str, name: &str) -> Result<ToxicView> {
        let proxies = self.inner.proxies.lock().await;
        let entry = proxies.get(proxy).ok_or(Error::ProxyNotFound)?;
        entry.find(name).map(|(d, i)| entry.toxics[d.index()][i].view()).ok_or(Error::ToxicNotFound)
    }

    /// Adds a toxic at the end of its direction's chain and applies it to live connections at once.
    pub async fn add_toxic(&self, proxy: &str, input: ToxicInput) -> Result<ToxicView> {
        let mut proxies = self.inner.proxies.lock().await;
        let entry = proxies.get_mut(proxy).ok_or(Error::ProxyNotFound)?;
        // Toxiproxy's order of checks: stream, default name, type, duplicate name, attributes.
        // Absent (or null) means downstream; any text, even empty, must parse. The text is kept as sent
        // (Toxiproxy shows `"stream":"UPSTREAM"` and names the toxic `latency_UPSTREAM`).
        let stream = input.stream.clone().or(input.direction.clone()).unwrap_or_else(|| "downstream".into());
        let direction = Direction::parse(&stream).ok_or(Error::InvalidStream)?;
        let type_name = input.kind.clone().unwrap_or_default();
        let name = match input.name.as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => format!("{type_name}_{stream}"),
        };
        let kind = ToxicKind::default_for(&type_name).ok_or(Error::InvalidToxicType)?;
        if kind.is_l7() && entry.protocol != Protocol::Http {
            return Err(Error::BadRequest(format!(
                "toxic type {type_name} needs a proxy with \"protocol\": \"http\", \
                 found proxy {proxy} with \"{}\"",
                entry.protocol.as_str()
            )));
        }
        if entry.find(&name).is_some() {
            return Err(Error::ToxicExists);
        }
        let kind = kind.merged(input.attributes.as_ref()).map_err(|e| Error::BadRequest(e.to_string()))?;
        kind.check_required().map_err(|e| Error::BadRequest(e.to_string()))?;
        let toxic = ToxicEntry {
            spec: ToxicSpec {
                id: self.next_id(),
                revision: 0,
                name: name.as_str().into(),
                kind,
                toxicity: checked_toxicity(input.toxicity)?.unwrap_or(1.0),
            },
            stream,
            ttl: input.ttl.map(Duration::from_millis),
            ttl_generation: self.next_id(),
        };
        let view = toxic.view();
        self.arm_ttl(proxy, &toxic);
        entry.toxics[direction.index()].push(toxic);
        entry.publish(direction);
        info!(proxy, toxic = %name, kind = %type_name, stream = %direction, "toxic added");
        Ok(view)
    }

    /// Merges attributes over the current ones and sets toxicity; type, stream and name never change.
    pub async fn update_toxic(&self, proxy: &str, name: &str, update: ToxicUpdate) -> Result<ToxicView> {
        let mut proxies = self.inner.proxies.lock().await;
        let entry = proxies.get_mut(proxy).ok_or(Error::ProxyNotFound)?;
        let (direction, i) = entry.find(name).ok_or(Error::ToxicNotFound)?;
        let generation = self.next_id();
        let toxic = &mut entry.toxics[direction.index()][i];
        let kind = toxic
            .spec
            .kind
            .merged(update.attributes.as_ref())
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        kind.check_required().map_err(|e| Error::BadRequest(e.to_string()))?;
        // Checked before anything changes: a refused update leaves the toxic as it was.
        let toxicity = checked_toxicity(update.toxicity)?.unwrap_or(toxic.spec.toxicity);
        toxic.spec.kind = kind;
        toxic.spec.toxicity = toxicity;
        toxic.spec.revision += 1;
        if let Some(ttl) = update.ttl {
            toxic.ttl = Some(Duration::from_millis(ttl));
        }
        // Any update re-arms a TTL from now: a runner that keeps updating keeps its fault alive.
        toxic.ttl_generation = generation;
        let toxic = toxic.clone();
        self.arm_ttl(proxy, &toxic);
        entry.publish(direction);
        info!(proxy, toxic = %name, "toxic updated");
        Ok(toxic.view())
    }

    /// Removes a toxic from the proxy and every live link; the bytes it held are forwarded first.
    pub async fn remove_toxic(&self, proxy: &str, name: &str) -> Result<()> {
        let mut proxies = self.inner.proxies.lock().await;
        let entry = proxies.get_mut(proxy).ok_or(Error::ProxyNotFound)?;
        let (direction, i) = entry.find(name).ok_or(Error::ToxicNotFound)?;
        entry.toxics[direction.index()].remove(i);
        entry.publish(direction);
        info!(proxy, toxic = %name, "toxic removed");
        Ok(())
    }

    pub async fn stats(&self, proxy: &str) -> Result<StatsSnapshot> {
        let proxies = self.inner.proxies.lock().await;
        let entry = proxies.get(proxy).ok_or(Error::ProxyNotFound)?;
        Ok(entry.shared.stats.snapshot_for(entry.protocol))
    }

    /// The completed requests of an `http` proxy one by one, from number `since` (see
    /// [`crate::RecordsSnapshot`]); a `tcp` proxy has none.
    pub async fn requests(&self, proxy: &str, since: u64) -> Result<crate::RecordsSnapshot> {
        let proxies = self.inner.proxies.lock().await;
        let entry = proxies.get(proxy).ok_or(Error::ProxyNotFound)?;
        Ok(entry.shared.stats.http.records_since(since))
    }

    /// Stats of every proxy, keyed by name.
    pub async fn all_stats(&self) -> BTreeMap<String, StatsSnapshot> {
        let proxies = self.inner.proxies.lock().await;
        proxies.iter().map(|(name, e)| (name.clone(), e.shared.stats.snapshot_for(e.protocol))).collect()
    }

    /// All proxies' metrics in Prometheus text format.
    pub async fn prometheus(&self) -> String {
        let proxies = self.inner.proxies.lock().await;
        let sources: Vec<MetricsSource<'_>> = proxies
            .values()
            .map(|e| MetricsSource {
                name: &e.shared.name,
                listen: &e.listen,
                upstream: &e.upstream,
                enabled: e.running.is_some(),
                stats: &e.shared.stats,
                http: e.protocol == Protocol::Http,
            })
            .collect();
        render_prometheus(&sources)
    }

    /// Stops every proxy and closes every connection. Toxics are runtime state: nothing outlives the server.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let mut proxies = self.inner.proxies.lock().await;
        for entry in proxies.values_mut() {
            entry.stop().await;
        }
    }

    /// Starts the timer that removes a toxic at its deadline, unless it was updated or removed since.
    fn arm_ttl(&self, proxy: &str, toxic: &ToxicEntry) {
        let Some(ttl) = toxic.ttl else { return };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let (proxy, id, generation) = (proxy.to_string(), toxic.spec.id, toxic.ttl_generation);
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            let Some(inner) = weak.upgrade() else { return };
            let mut proxies = inner.proxies.lock().await;
            let Some(entry) = proxies.get_mut(&proxy) else { return };
            for direction in Direction::ALL {
                let chain = &mut entry.toxics[direction.index()];
                if let Some(i) = chain.iter().position(|t| t.spec.id == id && t.ttl_generation == generation)
                {
                    let removed = chain.remove(i);
                    entry.publish(direction);
                    info!(proxy = %proxy, toxic = %removed.spec.name, "toxic expired (ttl) and was removed");
                }
            }
        });
    }
}

impl ProxyEntry {
    async fn start(&mut self, parent: &CancellationToken) -> Result<()> {
        let route = Route { upstream: &self.upstream, half_close: self.half_close, protocol: self.protocol };
        let running = Running::start(&self.listen, route, self.shared.clone(), parent).await?;
        self.listen = running.bound.to_string();
        self.running = Some(running);
        self.enabled = true;
        Ok(())
    }

    async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
        self.enabled = false;
    }

    fn find(&self, name: &str) -> Option<(Direction, usize)> {
        Direction::ALL
            .into_iter()
            .find_map(|d| self.toxics[d.index()].iter().position(|t| &*t.spec.name == name).map(|i| (d, i)))
    }

    /// Sends the direction's L4 chain to every live link, and the L7 rule set (both directions' L7 toxics, in
    /// view order) to every request from the next one on.
    fn publish(&self, direction: Direction) {
        let l4 = self.toxics[direction.index()].iter().filter(|t| !t.spec.kind.is_l7());
        let chain: Chain = Arc::new(l4.map(|t| t.spec.clone()).collect());
        self.shared.chains[direction.index()].send_replace(chain);
        let previous = self.shared.rules.borrow().clone();
        let l7 = rules::build(self.toxics.iter().flatten().map(|t| &t.spec), &previous);
        self.shared.rules.send_replace(l7);
    }

    fn toxic_views(&self) -> Vec<ToxicView> {
        self.toxics.iter().flatten().map(ToxicEntry::view).collect()
    }

    fn view(&self) -> ProxyView {
        ProxyView {
            name: self.shared.name.clone(),
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            enabled: self.enabled,
            half_close: self.half_close,
            protocol: self.protocol,
            latency_buckets_ms: self.latency_buckets.clone(),
            lease_ms: self.lease.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            owner: self.owner.clone(),
            toxics: self.toxic_views(),
        }
    }
}

impl ToxicEntry {
    fn view(&self) -> ToxicView {
        ToxicView {
            attributes: self.spec.kind.attributes(),
            name: self.spec.name.to_string(),
            kind: self.spec.kind.type_name().to_string(),
            stream: self.stream.clone(),
            toxicity: self.spec.toxicity,
            ttl: self.ttl.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// Name and upstream of a proxy input, or which is missing (`at proxy N` for populate, 1-based).
fn required(input: &ProxyInput, index: Option<usize>) -> Result<(String, String)> {
    let at = |field: &str| match index {
        Some(i) => Error::MissingField(format!("{field} at proxy {i}")),
        None => Error::MissingField(field.to_string()),
    };
    let name = input.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| at("name"))?;
    let upstream = input.upstream.clone().filter(|u| !u.is_empty()).ok_or_else(|| at("upstream"))?;
    Ok((name, upstream))
}

/// The protocol and extra latency bounds of a proxy input, checked (`at proxy N` for populate, 1-based).
fn options(input: &ProxyInput, index: Option<usize>) -> Result<(Protocol, Vec<f64>)> {
    let at = |message: String| match index {
        Some(i) => Error::BadRequest(format!("{message} at proxy {i}")),
        None => Error::BadRequest(message),
    };
    let protocol = match &input.protocol {
        Some(text) => Protocol::parse(text).map_err(at)?,
        None => Protocol::Tcp,
    };
    let bounds = checked_bounds(input.latency_buckets_ms.as_deref().unwrap_or_default()).map_err(at)?;
    checked_lease(input.lease_ms).map_err(at)?;
    Ok((protocol, bounds))
}

/// A lease of 0 ms would delete the proxy as it is made: refused, saying what was expected.
fn checked_lease(lease_ms: Option<u64>) -> std::result::Result<Option<Duration>, String> {
    match lease_ms {
        Some(0) => Err("lease_ms: expected a positive number of milliseconds, found 0".into()),
        other => Ok(other.map(Duration::from_millis)),
    }
}

/// Whether two listen addresses name the same socket once resolved (`localhost:26379` = `127.0.0.1:26379`).
/// A port of 0 never matches: it asks for a new random port.
async fn same_address(a: &str, b: &str) -> bool {
    if a == b && !a.ends_with(":0") {
        return true;
    }
    match (resolve_listen(a).await, resolve_listen(b).await) {
        (Ok(a), Ok(b)) => a.first().is_some_and(|x| x.port() != 0 && b.contains(x)),
        _ => false,
    }
}

/// Refuses a toxicity that does not fit a float32 (JSON `1e300` decodes to infinity), as Go's decoder does.
fn checked_toxicity(toxicity: Option<f32>) -> Result<Option<f32>> {
    match toxicity {
        Some(t) if !t.is_finite() => {
            Err(Error::BadRequest("toxicity: number out of range for a 32-bit float".into()))
        }
        other => Ok(other),
    }
}
