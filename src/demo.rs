//! `chaos demo`: the quick start's main job. Starts a real HTTP target service and a real `chaos proxy` API on
//! loopback and runs the example experiment `experiments/latency-on-dependency.yaml` against them, end to end:
//! live progress, a verdict, and the journal, JUnit, Markdown and HTML reports (`report.html`, whose path it
//! prints). `chaos demo --tour` instead walks through every L4 fault by hand through the admin API (latency,
//! pareto latency, bandwidth, timeout, slow_close, slicer, limit_data, reset_peer, a toxic with a TTL, a
//! disabled proxy) and measures what a client sees.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chaos_proxy::client::{Client, NewProxy, NewToxic, Stream};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Walk through every L4 fault by hand instead of running the example experiment.
    #[arg(long)]
    tour: bool,
    /// Where the experiment's reports go (journal.json, junit.xml, summary.md, report.html).
    #[arg(long, default_value = "chaos-demo-report")]
    reports: std::path::PathBuf,
    /// Round trips measured per phase (with --tour).
    #[arg(long, default_value_t = 40)]
    samples: usize,
    /// Seed for the proxy's random choices (jitter, toxicity), so the demo is reproducible.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Size of each request the demo client sends; the target answers with the same bytes.
const MESSAGE: usize = 64;

/// The example the demo runs, shipped in the binary so the quick start needs nothing else.
const EXAMPLE: &str = include_str!("../experiments/latency-on-dependency.yaml");

pub async fn run(args: DemoArgs) -> anyhow::Result<u8> {
    if args.tour {
        return tour(args).await.map(|()| 0);
    }
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let upstream = http.local_addr()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let target = tokio::spawn(crate::demo_target::run(http, stop.clone().cancelled_owned()));
    let api = TcpListener::bind("127.0.0.1:0").await?;
    let api_addr = api.local_addr()?;
    let server = chaos_proxy::Server::new(chaos_proxy::ServerConfig { seed: Some(args.seed), metrics: true });
    let serving = tokio::spawn(chaos_proxy::serve(api, server, stop.clone().cancelled_owned()));
    // A free port for the proxy the experiment creates in front of the target.
    let listen = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    eprintln!("chaos demo: HTTP target on {upstream}, chaos proxy API on http://{api_addr}");
    let vars = [
        ("api".to_string(), format!("http://{api_addr}")),
        ("upstream".to_string(), upstream.to_string()),
        ("listen".to_string(), listen.to_string()),
    ];
    let file = "experiments/latency-on-dependency.yaml";
    let exp =
        chaos_controller::experiment::parse(file, EXAMPLE, &vars).map_err(|d| anyhow::anyhow!("{d}"))?;
    std::fs::create_dir_all(&args.reports)?;
    let reports = crate::cli::run::Reports {
        journal: Some(args.reports.join("journal.json")),
        junit: Some(args.reports.join("junit.xml")),
        summary: Some(args.reports.join("summary.md")),
        html: Some(args.reports.join("report.html")),
        host: Default::default(),
    };
    let code = crate::cli::run::run_experiment(&exp, file, args.seed, false, &reports, true).await;
    stop.cancel();
    let _ = serving.await;
    let _ = target.await;
    println!("reports: {}/journal.json, junit.xml, summary.md", args.reports.display());
    let html = args.reports.join("report.html");
    let html = std::path::absolute(&html).unwrap_or(html);
    println!("HTML report: {} (open it in a browser: file://{})", html.display(), html.display());
    code
}

async fn tour(args: DemoArgs) -> anyhow::Result<()> {
    let target = start_target().await?;
    let api = TcpListener::bind("127.0.0.1:0").await?;
    let api_addr = api.local_addr()?;
    let server = chaos_proxy::Server::new(chaos_proxy::ServerConfig { seed: Some(args.seed), metrics: true });
    let stop = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(chaos_proxy::serve(api, server, stop.clone().cancelled_owned()));
    let result = phases(&args, target, api_addr).await;
    stop.cancel();
    let _ = serving.await;
    result
}

async fn phases(args: &DemoArgs, target: SocketAddr, api: SocketAddr) -> anyhow::Result<()> {
    let client = Client::new(&format!("http://{api}"))?;
    println!("chaos demo: target echo service on {target}, chaos proxy API on http://{api}");
    let proxy = client
        .create_proxy(&NewProxy {
            name: "demo".into(),
            listen: Some("127.0.0.1:0".into()),
            upstream: target.to_string(),
            enabled: None,
            half_close: None,
        })
        .await?;
    let via: SocketAddr = proxy.listen.parse().context("proxy listen address")?;
    println!("created proxy 'demo' on {via} -> {target}\n");
    println!("{:<44} {:>10} {:>10}  check", "phase", "p50", "p99");
    let mut failures = Vec::new();
    let mut check = |phase: &str, p50: String, p99: String, ok: bool, expect: &str| {
        println!("{phase:<44} {p50:>10} {p99:>10}  {} {expect}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            failures.push(phase.to_string());
        }
    };

    let direct = round_trips(target, args.samples).await?;
    check("direct to target", ms(direct.0), ms(direct.1), true, "(baseline)");
    let clean = round_trips(via, args.samples).await?;
    check(
        "through proxy, no toxics",
        ms(clean.0),
        ms(clean.1),
        clean.0 < direct.0 + Duration::from_millis(5),
        "(< +5 ms)",
    );

    client.add_toxic("demo", &toxic("latency", json!({"latency": 100, "jitter": 10}), None)).await?;
    let slow = round_trips(via, args.samples).await?;
    let ok = slow.0 >= Duration::from_millis(90) && slow.0 < Duration::from_millis(150);
    check("latency 100 ms ± 10 ms (downstream)", ms(slow.0), ms(slow.1), ok, "(p50 in 90..150 ms)");
    client.remove_toxic("demo", "latency_downstream").await?;

    client
        .add_toxic(
            "demo",
            &toxic("latency", json!({"latency": 50, "jitter": 20, "distribution": "pareto"}), None),
        )
        .await?;
    let tail = round_trips(via, args.samples).await?;
    let ok = tail.0 >= Duration::from_millis(50) && tail.1 >= tail.0;
    check("latency pareto, min 50 ms, mean 70 ms", ms(tail.0), ms(tail.1), ok, "(long tail, >= 50 ms)");
    client.remove_toxic("demo", "latency_downstream").await?;

    client.add_toxic("demo", &toxic("bandwidth", json!({"rate": 200}), None)).await?;
    let rate = bulk_rate(via, 100_000).await?;
    let ok = (rate - 200.0).abs() / 200.0 < 0.15;
    check(
        "bandwidth 200 KB/s (100 KB download)",
        format!("{rate:.0} KB/s"),
        String::new(),
        ok,
        "(within 15%)",
    );
    client.remove_toxic("demo", "bandwidth_downstream").await?;

    client.add_toxic("demo", &toxic("timeout", json!({"timeout": 300}), None)).await?;
    let (closed_after, got) = until_closed(via).await?;
    let ok = got == 0 && closed_after >= Duration::from_millis(290);
    check(
        "timeout 300 ms: data dropped, then closed",
        ms(closed_after),
        String::new(),
        ok,
        "(closed, 0 bytes)",
    );
    client.remove_toxic("demo", "timeout_downstream").await?;

    client.add_toxic("demo", &toxic("slow_close", json!({"delay": 300}), None)).await?;
    let closed_after = close_delay(via).await?;
    let ok = closed_after >= Duration::from_millis(290);
    check(
        "slow_close 300 ms: the close arrives late",
        ms(closed_after),
        String::new(),
        ok,
        "(closed >= 290 ms)",
    );
    client.remove_toxic("demo", "slow_close_downstream").await?;

    let slices = json!({"average_size": 8, "size_variation": 0, "delay": 10_000});
    client.add_toxic("demo", &toxic("slicer", slices, None)).await?;
    let sliced = round_trips(via, args.samples / 4 + 1).await?;
    // 64 bytes in 8-byte slices, 10 ms apart: 7 gaps.
    let ok = sliced.0 >= Duration::from_millis(65);
    check("slicer: 8-byte slices 10 ms apart", ms(sliced.0), ms(sliced.1), ok, "(p50 >= 65 ms)");
    client.remove_toxic("demo", "slicer_downstream").await?;

    client.add_toxic("demo", &toxic("limit_data", json!({"bytes": 100}), None)).await?;
    let (_, got) = until_closed_after(via, &[b'x'; 256]).await?;
    check("limit_data 100 bytes: then closed", format!("{got} B"), String::new(), got == 100, "(100 bytes)");
    client.remove_toxic("demo", "limit_data_downstream").await?;

    client.add_toxic("demo", &toxic("reset_peer", json!({"timeout": 50}), Some(Stream::Upstream))).await?;
    let reset = connection_reset(via).await?;
    check("reset_peer after 50 ms", String::new(), String::new(), reset, "(client saw ECONNRESET)");
    client.remove_toxic("demo", "reset_peer_upstream").await?;

    let mut expiring = toxic("latency", json!({"latency": 200}), None);
    expiring.ttl = Some(500);
    client.add_toxic("demo", &expiring).await?;
    let started = Instant::now();
    while !client.toxics("demo").await?.is_empty() && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gone = started.elapsed();
    let after = round_trips(via, args.samples / 4 + 1).await?;
    let ok = gone >= Duration::from_millis(450) && after.0 < Duration::from_millis(100);
    check("latency 200 ms with ttl 500 ms: removed itself", ms(gone), ms(after.0), ok, "(gone, fast again)");

    client
        .update_proxy(
            "demo",
            &chaos_proxy::client::ProxyUpdate { enabled: Some(false), ..Default::default() },
        )
        .await?;
    let refused = matches!(TcpStream::connect(via).await, Err(e) if e.kind() == ErrorKind::ConnectionRefused);
    check("proxy disabled (\"down\")", String::new(), String::new(), refused, "(connection refused)");

    let stats = client.stats("demo").await?;
    println!(
        "\nproxy stats: {} connections, {} bytes upstream, {} bytes downstream",
        stats["connections_total"], stats["upstream"]["sent_bytes"], stats["downstream"]["sent_bytes"]
    );
    client.delete_proxy("demo").await?;
    if failures.is_empty() {
        println!("demo passed: every fault had its effect and was reverted");
        Ok(())
    } else {
        bail!("demo failed: {}", failures.join(", "))
    }
}

fn toxic(kind: &str, attributes: Value, stream: Option<Stream>) -> NewToxic {
    let attributes: Map<String, Value> = match attributes {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    NewToxic { r#type: kind.into(), stream, attributes, ..Default::default() }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The demo target: echoes every byte back, like a minimal request/response service.
async fn start_target() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(echo(listener));
    Ok(addr)
}

/// `chaos demo-target`: the echo service as its own process, until SIGINT/SIGTERM or SIGKILL.
pub async fn serve_target(listen: &str) -> anyhow::Result<()> {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    println!("listening on tcp://{}", listener.local_addr()?);
    echo(listener).await;
    Ok(())
}

async fn echo(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((mut conn, _)) => {
                tokio::spawn(async move {
                    let (mut r, mut w) = conn.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
            // Out of descriptors: wait for some to close rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// p50 and p99 of `n` request/response round trips over one connection.
async fn round_trips(addr: SocketAddr, n: usize) -> anyhow::Result<(Duration, Duration)> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.set_nodelay(true)?;
    let request = [b'x'; MESSAGE];
    let mut reply = [0u8; MESSAGE];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let started = Instant::now();
        conn.write_all(&request).await?;
        tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut reply))
            .await
            .context("no reply within 10 s")??;
        samples.push(started.elapsed());
    }
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Ok((pick(0.5), pick(0.99)))
}

/// KB/s (1000 bytes) at which `bytes` come back through the echo service.
async fn bulk_rate(addr: SocketAddr, bytes: usize) -> anyhow::Result<f64> {
    let conn = TcpStream::connect(addr).await?;
    let (mut r, mut w) = conn.into_split();
    let writer = tokio::spawn(async move { w.write_all(&vec![7u8; bytes]).await.map(|_| w) });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    let started = Instant::now();
    while got < bytes {
        let n = tokio::time::timeout(Duration::from_secs(20), r.read(&mut buf))
            .await
            .context("transfer stalled")??;
        if n == 0 {
            bail!("connection closed after {got} bytes");
        }
        got += n;
    }
    let _ = writer.await;
    Ok(got as f64 / 1000.0 / started.elapsed().as_secs_f64().max(1e-6))
}

/// Sends a request and waits for the proxy to close; returns when, and how many bytes came back.
async fn until_closed(addr: SocketAddr) -> anyhow::Result<(Duration, usize)> {
    until_closed_after(addr, b"hello?").await
}

/// Closes its sending side (the echo service closes in turn); returns how long the close took to come back.
async fn close_delay(addr: SocketAddr) -> anyhow::Result<Duration> {
    let mut conn = TcpStream::connect(addr).await?;
    let started = Instant::now();
    conn.shutdown().await?;
    Ok(read_until_closed(&mut conn, started).await?.0)
}

/// Sends `payload` and waits for the proxy to close; returns when, and how many bytes came back.
async fn until_closed_after(addr: SocketAddr, payload: &[u8]) -> anyhow::Result<(Duration, usize)> {
    let mut conn = TcpStream::connect(addr).await?;
    let started = Instant::now();
    conn.write_all(payload).await?;
    read_until_closed(&mut conn, started).await
}

async fn read_until_closed(conn: &mut TcpStream, started: Instant) -> anyhow::Result<(Duration, usize)> {
    let mut buf = [0u8; 256];
    let mut got = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .context("never closed")?
        {
            Ok(0) | Err(_) => return Ok((started.elapsed(), got)),
            Ok(n) => got += n,
        }
    }
}

/// Whether the proxy resets the connection after the client sends.
async fn connection_reset(addr: SocketAddr) -> anyhow::Result<bool> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.write_all(b"ping").await?;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await.context("no reset")?;
    Ok(matches!(read, Err(e) if e.kind() == ErrorKind::ConnectionReset))
}
