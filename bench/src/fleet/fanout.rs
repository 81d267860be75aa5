//! Parts 1 and 2: halt-all fan-out and the controller's memory, with `chaos controller` alone in a child
//! process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use chaos_proto::transport::ClientConfig;
use chaos_proto::v1;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncBufReadExt as _;

use crate::memory::rss_kib;

use super::clients::{Api, Swarm, api_client, first_token, wait_connected};
use super::{
    Cpu, Fanout, HALT_TIMEOUT_MS, MUX, ROUND_GAP, SETTLE, STEPS, Sizes, Spread, Step, TRIVIAL_PER_ROUND,
};

pub(super) async fn fanout(
    chaos_bin: &Path,
    data_dir: &Path,
    sizes: &Sizes,
    per_connection: usize,
) -> Result<Fanout> {
    ensure!(
        chaos_bin.is_file(),
        "{} not found: build it with `cargo build --release -p chaos` (or pass --chaos-bin)",
        chaos_bin.display()
    );
    let counts: Vec<usize> = STEPS.into_iter().filter(|n| *n <= sizes.agents).collect();
    let steps =
        layout(chaos_bin, &data_dir.join("one-per-connection"), sizes, per_connection, &counts).await?;
    eprintln!("  again on a fresh controller, {MUX} agents per connection");
    let multiplexed = layout(chaos_bin, &data_dir.join("multiplexed"), sizes, MUX, &[0, sizes.agents]).await;
    if let Err(e) = &multiplexed {
        eprintln!("  error: {e:#}");
    }
    Ok(Fanout {
        binary: chaos_bin.display().to_string(),
        steps,
        multiplexed: multiplexed.map_err(|e| format!("{e:#}")),
    })
}

/// Starts a controller child, then grows one swarm through `counts` agents, a step at each.
async fn layout(
    chaos_bin: &Path,
    data_dir: &Path,
    sizes: &Sizes,
    per_connection: usize,
    counts: &[usize],
) -> Result<Vec<Step>> {
    let child = ControllerChild::start(chaos_bin, data_dir).await?;
    let url = format!("http://{}", child.addr);
    let mut api = api_client(&url, &first_token(&data_dir.join("api.token"))?).await?;
    let agent_token = chaos_proto::transport::bearer(&first_token(&data_dir.join("agent.token"))?)?;
    let endpoint = chaos_proto::transport::endpoint(&ClientConfig { url, ..Default::default() })?;
    // Warm-up: the first calls prepare the store's statements and open the API connection.
    for _ in 0..20 {
        api.list_schedules(v1::ListSchedulesRequest {}).await?;
    }
    halt_all(&mut api).await?;
    let mut swarm = Swarm::new(endpoint, agent_token, sizes.agents, per_connection);
    let mut steps = Vec::new();
    let mut failed = None;
    for &n in counts {
        match step(&mut api, &mut swarm, n, child.pid, sizes.halt_rounds).await {
            Ok(step) => {
                let slowest = step.rounds_ms.iter().copied().enumerate().max_by(|a, b| a.1.total_cmp(&b.1));
                eprintln!(
                    "  {n} agents, {per_connection} per connection: joined in {:.0} ms, RSS {} KiB; halt-all \
                     p50 {:.1} ms, slowest {:.1} ms (round {}), fewest acked {}; ListSchedules p50 {:.2} ms; \
                     controller CPU {:.1} ms per round",
                    step.join_ms,
                    step.rss_kib,
                    step.halt.p50_us / 1e3,
                    slowest.map_or(0.0, |(_, ms)| ms),
                    slowest.map_or(0, |(i, _)| i + 1),
                    step.acknowledged_min,
                    step.trivial.p50_us / 1e3,
                    step.cpu.controller_ms_per_round
                );
                steps.push(step);
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    swarm.stop().await;
    child.stop().await;
    match failed {
        Some(e) => Err(e),
        None => Ok(steps),
    }
}

/// Grows the swarm to `n` agents, reads the controller's RSS and idle CPU, then times `rounds` halt-alls
/// (each followed by the baseline calls).
async fn step(api: &mut Api, swarm: &mut Swarm, n: usize, pid: u32, rounds: usize) -> Result<Step> {
    let joining = Instant::now();
    swarm.grow(n).await?;
    swarm.wait_welcomed(n).await?;
    wait_connected(api, n).await?;
    let join_ms = joining.elapsed().as_secs_f64() * 1e3;
    let idle = CpuClock::start(pid)?;
    tokio::time::sleep(SETTLE).await;
    let (controller_idle, clients_idle) = idle.rates()?;
    let rss = rss_kib(pid)?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    let (mut halt, mut elapsed, mut first, mut last) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut trivial, mut list_none) = (Vec::new(), Vec::new());
    let (mut acknowledged_min, mut missing_total) = (usize::MAX, 0);
    let busy = CpuClock::start(pid)?;
    for _ in 0..rounds {
        let started = Instant::now();
        let response = halt_all(api).await?;
        halt.push(started.elapsed());
        elapsed.push(Duration::from_millis(response.elapsed_ms));
        acknowledged_min = acknowledged_min.min(response.agents_acknowledged.len());
        missing_total += response.agents_missing.len();
        if let Some((reached, earliest, latest)) = swarm.board.reached_since(started, n)
            && reached == n
        {
            first.push(earliest);
            last.push(latest);
        }
        for _ in 0..TRIVIAL_PER_ROUND {
            let t = Instant::now();
            api.list_schedules(v1::ListSchedulesRequest {}).await?;
            trivial.push(t.elapsed());
        }
        let selector = HashMap::from([("role".to_string(), "none".to_string())]);
        let t = Instant::now();
        api.list_agents(v1::ListAgentsRequest { selector }).await?;
        list_none.push(t.elapsed());
        tokio::time::sleep(ROUND_GAP).await;
    }
    let (controller_busy, clients_busy, wall) = busy.used()?;
    swarm.check()?;
    let net = |busy: f64, idle_rate: f64| (busy - idle_rate * wall) / rounds.max(1) as f64 * 1e3;
    let cpu = Cpu {
        controller_idle_pct: controller_idle * 100.0,
        clients_idle_pct: clients_idle * 100.0,
        controller_ms_per_round: net(controller_busy, controller_idle),
        clients_ms_per_round: net(clients_busy, clients_idle),
    };
    let rounds_ms = halt.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    Ok(Step {
        agents: n,
        per_connection: swarm.per_connection,
        join_ms,
        rss_kib: rss,
        fds,
        halt: Spread::of(&mut halt)?,
        rounds_ms,
        acknowledged_min,
        missing_total,
        controller_elapsed: Spread::of(&mut elapsed)?,
        first_reached: Spread::of(&mut first).ok(),
        last_reached: Spread::of(&mut last).ok(),
        trivial: Spread::of(&mut trivial)?,
        list_none: Spread::of(&mut list_none)?,
        cpu,
    })
}

/// CPU seconds used by the controller child and by this process since `start`.
struct CpuClock {
    pid: u32,
    controller: f64,
    clients: f64,
    at: Instant,
}

impl CpuClock {
    fn start(pid: u32) -> Result<CpuClock> {
        Ok(CpuClock {
            pid,
            controller: cpu_secs(&pid.to_string())?,
            clients: cpu_secs("self")?,
            at: Instant::now(),
        })
    }

    /// (controller CPU s, clients CPU s, wall s) since `start`.
    fn used(&self) -> Result<(f64, f64, f64)> {
        let controller = cpu_secs(&self.pid.to_string())? - self.controller;
        let clients = cpu_secs("self")? - self.clients;
        Ok((controller, clients, self.at.elapsed().as_secs_f64()))
    }

    /// Share of one core each used since `start`.
    fn rates(&self) -> Result<(f64, f64)> {
        let (controller, clients, wall) = self.used()?;
        Ok((controller / wall, clients / wall))
    }
}

/// utime + stime of `/proc/PID/stat` in seconds (Linux reports them in USER_HZ = 100 ticks per second, on
/// every architecture).
fn cpu_secs(pid: &str) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // After the last ')', index 0 is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (field(14), field(15)) else { bail!("no utime/stime in {path}") };
    Ok((utime + stime) as f64 / 100.0)
}

async fn halt_all(api: &mut Api) -> Result<v1::HaltAllResponse> {
    let request =
        v1::HaltAllRequest { reason: "chaos-bench".into(), freeze: false, timeout_ms: HALT_TIMEOUT_MS };
    Ok(api.halt_all(request).await.context("HaltAll")?.into_inner())
}

/// `chaos controller --data-dir DIR --listen 127.0.0.1:0`, stopped (SIGTERM, then SIGKILL) by [`Self::stop`]
/// or killed on drop.
struct ControllerChild {
    child: tokio::process::Child,
    pid: u32,
    addr: SocketAddr,
    /// Kept open: a controller printing to a closed pipe would fail.
    _stdout: tokio::io::BufReader<tokio::process::ChildStdout>,
}

impl ControllerChild {
    async fn start(bin: &Path, data_dir: &Path) -> Result<ControllerChild> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let log_path = data_dir.join("controller.stderr.log");
        let log =
            std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut child = tokio::process::Command::new(bin)
            .arg("controller")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {} controller", bin.display()))?;
        let pid = child.id().context("the controller exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(stdout);
        tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
            .await
            .context("no `listening on` line within 10 s")??;
        let addr =
            line.trim().strip_prefix("listening on ").and_then(|a| a.parse().ok()).with_context(|| {
                format!("expected `listening on ADDR`, found {line:?} (see {})", log_path.display())
            })?;
        Ok(ControllerChild { child, pid, addr, _stdout: reader })
    }

    async fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            eprintln!("  note: the controller did not exit within 10 s of SIGTERM; killed");
            let _ = self.child.kill().await;
        }
    }
}
