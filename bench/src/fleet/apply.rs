//! Parts 3 and 4: apply→ack through an in-process controller's `Fleet`, to protocol clients and to one real
//! agent.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use chaos_agent::host::HostAgent;
use chaos_agent::policy::AgentPolicy;
use chaos_agent::remote::ServeOptions;
use chaos_agent::spec::FaultSpec;
use chaos_controller::fleet::{ApplyRequest, Fleet};
use chaos_controller::server::{Controller, ControllerConfig};
use chaos_proto::transport::ClientConfig;
use chaos_proto::v1::controller_message::Body;
use chaos_proto::v1::{self, FaultState};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::clients::{Api, Swarm, agent_id, api_client, first_token, wait_connected};
use super::{
    ApplyAck, EFFECT_DEADLINE, FAULT_DURATION, JOIN_DEADLINE, REAL_AGENT, REAL_WARMUP, RealAgent,
    RealOutcome, Sizes, Spread, Timed,
};

/// A controller served on this process's runtime, with its `Fleet` at hand.
struct InProcess {
    fleet: Fleet,
    url: String,
    api: Api,
    agent_token: String,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<Result<(), chaos_controller::server::ServerError>>,
}

pub(super) async fn in_process(
    data_dir: &Path,
    sizes: &Sizes,
    per_connection: usize,
) -> (Result<ApplyAck, String>, RealOutcome) {
    let controller = match InProcess::start(data_dir).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("  error: {e:#}");
            let e = format!("{e:#}");
            return (Err(e.clone()), RealOutcome::Error(e));
        }
    };
    let apply = apply_ack(&controller, sizes, per_connection).await;
    match &apply {
        Ok(a) => {
            for t in a.sequential.iter().chain(&a.concurrent) {
                eprintln!("  {}: p50 {:.0} µs, p99 {:.0} µs", t.what, t.spread.p50_us, t.spread.p99_us);
            }
        }
        Err(e) => eprintln!("  error: {e:#}"),
    }
    let real = if nix::unistd::geteuid().is_root() {
        eprintln!(
            "fleet: part 4, one real agent, process-pause applied and reverted {} times",
            sizes.real_rounds
        );
        match real_agent(&controller, data_dir, sizes.real_rounds).await {
            Ok(r) => {
                eprintln!(
                    "  apply→ack p50 {:.0} µs, p99 {:.0} µs; revert→ack p50 {:.0} µs, p99 {:.0} µs; local \
                     apply p50 {:.0} µs, revert p50 {:.0} µs",
                    r.remote_apply.p50_us,
                    r.remote_apply.p99_us,
                    r.remote_revert.p50_us,
                    r.remote_revert.p99_us,
                    r.local_apply.p50_us,
                    r.local_revert.p50_us
                );
                RealOutcome::Measured(Box::new(r))
            }
            Err(e) => {
                eprintln!("  error: {e:#}");
                RealOutcome::Error(format!("{e:#}"))
            }
        }
    } else {
        let why = "not root: this part runs a HostAgent as deployed, as root (its capability probe makes a \
                   network namespace)";
        eprintln!("fleet: part 4 skipped: {why}");
        RealOutcome::Skipped(why.into())
    };
    controller.stop().await;
    (apply.map_err(|e| format!("{e:#}")), real)
}

impl InProcess {
    async fn start(data_dir: &Path) -> Result<InProcess> {
        let config = ControllerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_path_buf(),
            ..ControllerConfig::default()
        };
        let controller =
            Controller::bind(config).await.map_err(|e| anyhow!("starting the controller: {e}"))?;
        let url = format!("http://{}", controller.local_addr);
        let fleet = controller.api.fleet.clone();
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(controller.serve(shutdown.clone()));
        let api = api_client(&url, &first_token(&data_dir.join("api.token"))?).await?;
        let agent_token = first_token(&data_dir.join("agent.token"))?;
        Ok(InProcess { fleet, url, api, agent_token, shutdown, served })
    }

    /// Stops serving; the agents must be gone first (shutdown waits for open connections).
    async fn stop(self) {
        let InProcess { api, shutdown, served, .. } = self;
        drop(api);
        shutdown.cancel();
        if tokio::time::timeout(Duration::from_secs(10), served).await.is_err() {
            eprintln!("  note: the in-process controller did not stop within 10 s");
        }
    }
}

async fn apply_ack(c: &InProcess, sizes: &Sizes, per_connection: usize) -> Result<ApplyAck> {
    let n = sizes.agents;
    let endpoint =
        chaos_proto::transport::endpoint(&ClientConfig { url: c.url.clone(), ..Default::default() })?;
    let token = chaos_proto::transport::bearer(&c.agent_token)?;
    let mut swarm = Swarm::new(endpoint, token, n, per_connection);
    let joining = Instant::now();
    swarm.grow(n).await?;
    swarm.wait_welcomed(n).await?;
    let mut api = c.api.clone();
    wait_connected(&mut api, n).await?;
    eprintln!("  {n} protocol clients joined in {:.0} ms", joining.elapsed().as_secs_f64() * 1e3);
    let measured = measure_applies(c, sizes).await;
    // Checked before the stop: failures after it are the stop's doing.
    let healthy = swarm.check();
    swarm.stop().await;
    healthy.and(measured)
}

async fn measure_applies(c: &InProcess, sizes: &Sizes) -> Result<ApplyAck> {
    let (n, count) = (sizes.agents, sizes.applies);
    let mut pick = Lcg(0x5eed_f1ee7);
    let mut api = c.api.clone();
    let (mut trivial, mut plan, mut apply, mut revert) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // One warm-up pass of each, then `count` measured, interleaved so that drift hits them alike.
    for i in 0..=count {
        let agent = agent_id(pick.below(n));
        let t = Instant::now();
        api.list_schedules(v1::ListSchedulesRequest {}).await?;
        let trivial_took = t.elapsed();
        let t = Instant::now();
        let planned = c.fleet.request(&agent, plan_body()).await.map_err(|e| anyhow!("plan: {e}"))?;
        let plan_took = t.elapsed();
        ensure!(planned.state == FaultState::Planned as i32, "plan: expected PLANNED, found {planned:?}");
        let fault_id = format!("seq-{i}");
        let t = Instant::now();
        c.fleet.apply(apply_request(&agent, &fault_id, i)).await.map_err(|e| anyhow!("apply: {e}"))?;
        let apply_took = t.elapsed();
        let t = Instant::now();
        c.fleet.revert(&fault_id).await.map_err(|e| anyhow!("revert: {e}"))?;
        let revert_took = t.elapsed();
        if i > 0 {
            trivial.push(trivial_took);
            plan.push(plan_took);
            apply.push(apply_took);
            revert.push(revert_took);
        }
    }
    let sequential = vec![
        Timed::of(TRIVIAL, &mut trivial, None)?,
        Timed::of("Fleet::request(plan) → PLANNED (no audit write)", &mut plan, None)?,
        Timed::of(APPLY, &mut apply, None)?,
        Timed::of(REVERT, &mut revert, None)?,
    ];

    let gate = Arc::new(Semaphore::new(sizes.in_flight));
    let agents: Vec<String> = (0..count).map(|_| agent_id(pick.below(n))).collect();
    let list_schedules = |_| {
        let mut api = api.clone();
        async move {
            api.list_schedules(v1::ListSchedulesRequest {}).await?;
            Ok(())
        }
    };
    // Warm-up: the API connection's first burst of concurrent streams.
    concurrently(&gate, sizes.in_flight, list_schedules).await?;
    let (mut trivial, trivial_wall) = concurrently(&gate, count, list_schedules).await?;
    let (mut apply, apply_wall) = concurrently(&gate, count, |i| {
        let (fleet, agent) = (c.fleet.clone(), agents[i].clone());
        async move {
            fleet
                .apply(apply_request(&agent, &format!("conc-{i}"), i))
                .await
                .map_err(|e| anyhow!("apply: {e}"))?;
            Ok(())
        }
    })
    .await?;
    let (mut revert, revert_wall) = concurrently(&gate, count, |i| {
        let fleet = c.fleet.clone();
        async move { fleet.revert(&format!("conc-{i}")).await.map_err(|e| anyhow!("revert: {e}")) }
    })
    .await?;
    ensure!(c.fleet.held().is_empty(), "faults still held after every revert: {:?}", c.fleet.held());
    let concurrent = vec![
        Timed::of(TRIVIAL, &mut trivial, Some(trivial_wall))?,
        Timed::of(APPLY, &mut apply, Some(apply_wall))?,
        Timed::of(REVERT, &mut revert, Some(revert_wall))?,
    ];
    Ok(ApplyAck { agents: n, sequential, concurrent, in_flight: sizes.in_flight })
}

const TRIVIAL: &str = "ListSchedules through the API (baseline)";
const APPLY: &str = "Fleet::apply → APPLIED";
const REVERT: &str = "Fleet::revert → REVERTED";

impl Timed {
    fn of(what: &'static str, samples: &mut [Duration], batch: Option<Duration>) -> Result<Timed> {
        let per_sec = batch.map(|wall| samples.len() as f64 / wall.as_secs_f64());
        Ok(Timed { what, spread: Spread::of(samples)?, per_sec })
    }
}

/// Runs `make(i)` for `i` in `0..count` with at most the gate's permits in flight; the time of each, from its
/// start (after it got a permit) to its end, and the wall time of the whole batch.
async fn concurrently<F, Fut>(
    gate: &Arc<Semaphore>,
    count: usize,
    mut make: F,
) -> Result<(Vec<Duration>, Duration)>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let batch = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let permit = gate.clone().acquire_owned().await?;
        let work = make(i);
        tasks.spawn(async move {
            let t = Instant::now();
            let result = work.await;
            drop(permit);
            result.map(|()| t.elapsed())
        });
    }
    let mut times = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        times.push(joined??);
    }
    Ok((times, batch.elapsed()))
}

fn plan_body() -> Body {
    Body::Plan(v1::Plan { spec_json: CPU_SPEC.into(), lease_ms: 10_000, seed: 1, pod: None })
}

/// What the protocol clients are asked to apply (they do not).
const CPU_SPEC: &str = r#"{"kind":"cpu-stress","workers":1}"#;

fn apply_request(agent: &str, fault_id: &str, seed: usize) -> ApplyRequest {
    ApplyRequest {
        agent: agent.to_string(),
        run: "bench-run".into(),
        fault_id: fault_id.to_string(),
        spec_json: CPU_SPEC.into(),
        duration: Some(FAULT_DURATION),
        seed: seed as u64,
        actor: "chaos-bench".into(),
        pod: None,
    }
}

/// A deterministic pick of agents (a linear congruential generator: no dependency, same picks every run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n.max(1) as u64) as usize
    }
}

// === part 4: one real agent ===

async fn real_agent(c: &InProcess, data_dir: &Path, rounds: usize) -> Result<RealAgent> {
    let state_dir = data_dir.join("real-agent-state");
    let starting = Instant::now();
    let (agent, _replayed) =
        tokio::task::spawn_blocking(move || HostAgent::start(state_dir, AgentPolicy::default(), 7))
            .await?
            .context("starting the HostAgent")?;
    let start_ms = starting.elapsed().as_secs_f64() * 1e3;
    let endpoint =
        chaos_proto::transport::endpoint(&ClientConfig { url: c.url.clone(), ..Default::default() })?;
    let options = ServeOptions {
        token: Some(c.agent_token.clone()),
        labels: [("role".to_string(), "bench-real".to_string())].into(),
        ..ServeOptions::new(endpoint, REAL_AGENT)
    };
    let stop = CancellationToken::new();
    let serving = tokio::spawn(chaos_agent::remote::serve(options, agent.clone(), stop.clone()));
    let measured = async {
        let deadline = Instant::now() + JOIN_DEADLINE;
        while !c.fleet.connected().iter().any(|id| id == REAL_AGENT) {
            ensure!(!serving.is_finished(), "the real agent stopped before connecting");
            ensure!(Instant::now() < deadline, "the real agent did not connect within {JOIN_DEADLINE:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let victim = Victim::spawn()?;
        pause_rounds(c, &agent, &victim, rounds).await
    }
    .await;
    stop.cancel();
    match tokio::time::timeout(Duration::from_secs(15), serving).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("  note: the real agent's shutdown: {e}"),
        Ok(Err(e)) => eprintln!("  note: the real agent's task: {e}"),
        Err(_) => eprintln!("  note: the real agent did not stop within 15 s"),
    }
    Ok(RealAgent { start_ms, ..measured? })
}

/// Each round: the pause through the controller and the real agent, the same `HostAgent` called locally, and
/// raw signals; every apply is checked stopped and every revert running on `/proc` (not timed).
async fn pause_rounds(c: &InProcess, agent: &HostAgent, victim: &Victim, rounds: usize) -> Result<RealAgent> {
    let pid = victim.pid;
    let spec_json = format!(r#"{{"kind":"process-pause","target":{{"pid":{pid}}}}}"#);
    let spec = FaultSpec::parse(&spec_json).map_err(|e| anyhow!("the pause spec: {e}"))?;
    let mut times: [Vec<Duration>; 7] = Default::default();
    for round in 0..REAL_WARMUP + rounds {
        let fault_id = format!("real-{round}");
        let request = ApplyRequest {
            agent: REAL_AGENT.into(),
            run: "bench-real".into(),
            fault_id: fault_id.clone(),
            spec_json: spec_json.clone(),
            duration: Some(FAULT_DURATION),
            seed: 1,
            actor: "chaos-bench".into(),
            pod: None,
        };
        let t = Instant::now();
        c.fleet.apply(request).await.map_err(|e| anyhow!("remote apply: {e}"))?;
        let remote_apply = t.elapsed();
        wait_state(pid, true).await?;
        let renew = Body::Renew(v1::Renew { fault_id: fault_id.clone(), lease_ms: 10_000 });
        let t = Instant::now();
        let renewed = c.fleet.request(REAL_AGENT, renew).await.map_err(|e| anyhow!("renew: {e}"))?;
        let remote_renew = t.elapsed();
        ensure!(renewed.state == FaultState::Renewed as i32, "renew: expected RENEWED, found {renewed:?}");
        let t = Instant::now();
        c.fleet.revert(&fault_id).await.map_err(|e| anyhow!("remote revert: {e}"))?;
        let remote_revert = t.elapsed();
        wait_state(pid, false).await?;

        // On a blocking thread, as the agent's own request tasks call it.
        let (local, spec_for_local) = (agent.clone(), spec.clone());
        let (local_apply, local_revert) =
            tokio::task::spawn_blocking(move || -> Result<(Duration, Duration)> {
                let t = Instant::now();
                let applied = local.apply(&spec_for_local, Some(FAULT_DURATION))?;
                let apply_took = t.elapsed();
                let id = applied.id.context("a pause has an id to revert")?;
                spin_state(pid, true)?;
                let t = Instant::now();
                local.revert(id)?;
                let revert_took = t.elapsed();
                spin_state(pid, false)?;
                Ok((apply_took, revert_took))
            })
            .await??;

        let target = Pid::from_raw(pid);
        let t = Instant::now();
        kill(target, Signal::SIGSTOP)?;
        let raw_stop = t.elapsed();
        spin_state(pid, true)?;
        let t = Instant::now();
        kill(target, Signal::SIGCONT)?;
        let raw_cont = t.elapsed();
        spin_state(pid, false)?;

        if round >= REAL_WARMUP {
            let taken =
                [remote_apply, remote_revert, remote_renew, local_apply, local_revert, raw_stop, raw_cont];
            for (samples, took) in times.iter_mut().zip(taken) {
                samples.push(took);
            }
        }
    }
    let [remote_apply, remote_revert, remote_renew, local_apply, local_revert, raw_stop, raw_cont] =
        &mut times;
    Ok(RealAgent {
        start_ms: 0.0,
        remote_apply: Spread::of(remote_apply)?,
        remote_revert: Spread::of(remote_revert)?,
        remote_renew: Spread::of(remote_renew)?,
        local_apply: Spread::of(local_apply)?,
        local_revert: Spread::of(local_revert)?,
        raw_stop: Spread::of(raw_stop)?,
        raw_cont: Spread::of(raw_cont)?,
    })
}

/// A `sleep 600` child, killed and reaped on drop.
struct Victim {
    child: std::process::Child,
    pid: i32,
}

impl Victim {
    fn spawn() -> Result<Victim> {
        let child = std::process::Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning `sleep 600`")?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        Ok(Victim { child, pid })
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `/proc/PID/stat` says stopped (`T`).
fn stopped(pid: i32) -> Result<bool> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("the victim is gone")?;
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    Ok(state == Some("T"))
}

/// Polls without sleeping until the victim is stopped (or running); fails after [`EFFECT_DEADLINE`].
fn spin_state(pid: i32, want_stopped: bool) -> Result<()> {
    let deadline = Instant::now() + EFFECT_DEADLINE;
    while stopped(pid)? != want_stopped {
        ensure!(Instant::now() < deadline, "victim {pid}: stopped = {want_stopped} not seen within 5 s");
        std::hint::spin_loop();
    }
    Ok(())
}

/// [`spin_state`] that yields to the runtime between polls.
async fn wait_state(pid: i32, want_stopped: bool) -> Result<()> {
    let deadline = Instant::now() + EFFECT_DEADLINE;
    while stopped(pid)? != want_stopped {
        ensure!(Instant::now() < deadline, "victim {pid}: stopped = {want_stopped} not seen within 5 s");
        tokio::task::yield_now().await;
    }
    Ok(())
}
