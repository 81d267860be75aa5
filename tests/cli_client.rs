//! End-to-end tests of `chaos proxies` (the toxiproxy-cli work-alike) against a real `chaos proxy` server:
//! exact output lines, the state each command leaves on the server, and the errors users see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chaos_proxy::client::{Client, NewProxy, Proxy, Stream};
use serde_json::{Value, json};
use support::ChaosProxy;

/// A blocking view of the server's admin API, to check what the CLI changed.
struct Api {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Api {
    fn new(server: &ChaosProxy) -> Api {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Api { rt, client: Client::new(&server.url()).unwrap() }
    }

    fn proxy(&self, name: &str) -> Proxy {
        self.rt.block_on(self.client.proxy(name)).unwrap()
    }

    fn proxy_names(&self) -> Vec<String> {
        self.rt.block_on(self.client.proxies()).unwrap().into_keys().collect()
    }

    fn create(&self, name: &str, upstream: &str) -> Proxy {
        let new = NewProxy {
            name: name.into(),
            listen: Some("127.0.0.1:0".into()),
            upstream: upstream.into(),
            enabled: None,
            half_close: None,
        };
        self.rt.block_on(self.client.create_proxy(&new)).unwrap()
    }
}

/// Runs `chaos proxies ARGS` with stdout piped (so the output is the non-terminal form) and no inherited
/// `TOXIPROXY_URL`.
fn chaos(args: &[&str], env: Option<&str>) -> Output {
    let mut command = Command::new(support::chaos_bin());
    command.arg("proxies").args(args).env_remove("TOXIPROXY_URL").stdin(Stdio::null());
    if let Some(url) = env {
        command.env("TOXIPROXY_URL", url);
    }
    command.output().expect("run chaos proxies")
}

/// Runs a command that must succeed and returns its stdout.
fn ok(server: &ChaosProxy, args: &[&str]) -> String {
    let url = server.url();
    let argv: Vec<&str> = ["--host", url.as_str()].into_iter().chain(args.iter().copied()).collect();
    let out = chaos(&argv, None);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "chaos proxies {argv:?} failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout
}

/// Runs a command that must fail with exit code 1 and returns its stderr.
fn fails(args: &[&str], env: Option<&str>) -> String {
    let out = chaos(args, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "chaos proxies {args:?}: {}\nstderr: {stderr}", out.status);
    assert!(
        out.stdout.is_empty(),
        "a failed command printed results: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

fn attribute(proxy: &Proxy, toxic: &str, key: &str) -> Value {
    let toxic = proxy.toxics.iter().find(|t| t.name == toxic).unwrap_or_else(|| panic!("no toxic {toxic}"));
    toxic.attributes.get(key).cloned().unwrap_or_else(|| panic!("no attribute {key} in {toxic:?}"))
}

#[test]
fn proxy_lifecycle_prints_what_toxiproxy_cli_prints() {
    let server = ChaosProxy::start(&[]);
    let api = Api::new(&server);
    let upstream = support::echo_server().to_string();

    assert_eq!(
        ok(&server, &["create", "redis", "--listen", "127.0.0.1:0", "--upstream", &upstream]),
        "Created new proxy redis\n"
    );
    let created = api.proxy("redis");
    assert_eq!((created.upstream.as_str(), created.enabled), (upstream.as_str(), true));
    assert!(!created.listen.ends_with(":0"), "the bound port is reported, found {}", created.listen);
    let listen = created.listen;

    assert_eq!(ok(&server, &["list"]), format!("redis\t{listen}\t{upstream}\tenabled\t0\n"));

    assert_eq!(ok(&server, &["toggle", "redis"]), "Proxy redis is now disabled\n");
    assert!(!api.proxy("redis").enabled);
    assert_eq!(ok(&server, &["ls"]), format!("redis\t{listen}\t{upstream}\tdisabled\t0\n"));
    assert_eq!(ok(&server, &["tog", "redis"]), "Proxy redis is now enabled\n");
    assert!(api.proxy("redis").enabled);
    // Re-enabling listens on the same address again.
    support::connect(listen.parse().unwrap());

    assert_eq!(ok(&server, &["delete", "redis"]), "Deleted proxy redis\n");
    assert!(api.proxy_names().is_empty());
    assert_eq!(ok(&server, &["list"]), "");
}

#[test]
fn toxic_lifecycle_prints_what_toxiproxy_cli_prints() {
    let server = ChaosProxy::start(&[]);
    let api = Api::new(&server);
    let upstream = support::echo_server().to_string();
    ok(&server, &["c", "redis", "-l", "127.0.0.1:0", "-u", &upstream]);

    assert_eq!(
        ok(&server, &["toxic", "add", "-t", "latency", "-a", "latency=100", "-a", "jitter=10", "redis"]),
        "Added downstream latency toxic 'latency_downstream' on proxy 'redis'\n"
    );
    assert_eq!(
        ok(
            &server,
            &["t", "a", "-u", "--type", "bandwidth", "-n", "bw", "--tox", "0.5", "-a", "rate=1000", "redis"]
        ),
        "Added upstream bandwidth toxic 'bw' on proxy 'redis'\n"
    );
    let proxy = api.proxy("redis");
    assert_eq!(attribute(&proxy, "latency_downstream", "latency"), json!(100));
    assert_eq!(attribute(&proxy, "latency_downstream", "jitter"), json!(10));
    assert_eq!(attribute(&proxy, "bw", "rate"), json!(1000));
    let bw = proxy.toxics.iter().find(|t| t.name == "bw").unwrap();
    assert_eq!((bw.stream, bw.toxicity), (Stream::Upstream, 0.5));

    // Upstream toxics first, attributes sorted by key.
    assert_eq!(
        ok(&server, &["inspect", "redis"]),
        "bw\ttype=bandwidth\tstream=upstream\ttoxicity=0.50\tattributes=[\trate=1000\t]\n\
         latency_downstream\ttype=latency\tstream=downstream\ttoxicity=1.00\tattributes=[\tjitter=10\tlatency=100\t]\n"
    );
    let listen = proxy.listen.clone();
    assert_eq!(ok(&server, &["list"]), format!("redis\t{listen}\t{upstream}\tenabled\t2\n"));

    // Attributes not given keep their values; an omitted --toxicity keeps the current one.
    assert_eq!(
        ok(&server, &["toxic", "update", "-n", "latency_downstream", "-a", "jitter=25", "redis"]),
        "Updated toxic 'latency_downstream' on proxy 'redis'\n"
    );
    assert_eq!(
        ok(&server, &["t", "u", "--toxicName", "bw", "--toxicity", "0.25", "redis"]),
        "Updated toxic 'bw' on proxy 'redis'\n"
    );
    let proxy = api.proxy("redis");
    assert_eq!(attribute(&proxy, "latency_downstream", "latency"), json!(100));
    assert_eq!(attribute(&proxy, "latency_downstream", "jitter"), json!(25));
    assert_eq!(attribute(&proxy, "bw", "rate"), json!(1000));
    let toxicity = |name: &str| proxy.toxics.iter().find(|t| t.name == name).unwrap().toxicity;
    assert_eq!((toxicity("latency_downstream"), toxicity("bw")), (1.0, 0.25));

    assert_eq!(
        ok(&server, &["toxic", "remove", "-n", "bw", "redis"]),
        "Removed toxic 'bw' on proxy 'redis'\n"
    );
    assert_eq!(
        ok(&server, &["t", "d", "--name", "latency_downstream", "redis"]),
        "Removed toxic 'latency_downstream' on proxy 'redis'\n"
    );
    assert!(api.proxy("redis").toxics.is_empty());
    assert_eq!(ok(&server, &["inspect", "redis"]), "");
}

#[test]
fn json_output_is_the_servers_json() {
    let server = ChaosProxy::start(&[]);
    let api = Api::new(&server);
    api.create("redis", "127.0.0.1:1");
    ok(&server, &["toxic", "add", "-t", "latency", "-a", "latency=5", "redis"]);

    let list: Value = serde_json::from_str(&ok(&server, &["list", "--json"])).unwrap();
    assert_eq!(list["redis"]["upstream"], "127.0.0.1:1");
    assert_eq!(list["redis"]["toxics"][0]["attributes"]["latency"], 5);

    let inspect: Value = serde_json::from_str(&ok(&server, &["inspect", "--json", "redis"])).unwrap();
    assert_eq!(inspect["name"], "redis");
    assert_eq!(inspect["toxics"][0]["type"], "latency");
    assert_eq!(inspect["toxics"][0]["stream"], "downstream");
}

#[test]
fn ttl_toxics_remove_themselves() {
    let server = ChaosProxy::start(&[]);
    let api = Api::new(&server);
    api.create("redis", "127.0.0.1:1");
    assert_eq!(
        ok(&server, &["toxic", "add", "-t", "latency", "-a", "latency=5", "--ttl", "300", "redis"]),
        "Added downstream latency toxic 'latency_downstream' on proxy 'redis'\n"
    );
    let end = Instant::now() + Duration::from_secs(10);
    while !api.proxy("redis").toxics.is_empty() {
        assert!(Instant::now() < end, "the toxic with a 300 ms ttl is still there after 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn toxiproxy_url_names_the_server_unless_host_is_given() {
    let server = ChaosProxy::start(&[]);
    let api = Api::new(&server);
    let proxy = api.create("web", "127.0.0.1:2");
    let expected = format!("web\t{}\t127.0.0.1:2\tenabled\t0\n", proxy.listen);

    let url = server.url();
    let out = chaos(&["list"], Some(&url));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);

    // `host:port` without a scheme is accepted too, and --host wins over the environment.
    let bare = server.api.to_string();
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    let out = chaos(&["ls", "--host", &bare], Some(&dead));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
}

#[test]
fn api_errors_name_the_server_and_say_what_went_wrong() {
    let server = ChaosProxy::start(&[]);
    let api = Api::new(&server);
    api.create("redis", "127.0.0.1:1");
    let url = server.url();

    let stderr = fails(&["--host", &url, "inspect", "nope"], None);
    assert!(
        stderr.contains(&format!("cannot inspect proxy 'nope' on {url}: proxy not found (http 404)")),
        "{stderr}"
    );

    let stderr = fails(&["--host", &url, "toggle", "nope"], None);
    assert!(stderr.contains("proxy not found"), "{stderr}");
    let stderr = fails(&["--host", &url, "delete", "nope"], None);
    assert!(stderr.contains("proxy not found"), "{stderr}");
    let stderr = fails(&["--host", &url, "toxic", "add", "-t", "latency", "nope"], None);
    assert!(stderr.contains("proxy not found"), "{stderr}");

    let stderr = fails(&["--host", &url, "create", "redis", "-l", "127.0.0.1:0", "-u", "127.0.0.1:1"], None);
    assert!(
        stderr.contains(&format!("cannot create proxy 'redis' on {url}: proxy already exists (http 409)")),
        "{stderr}"
    );

    let stderr = fails(&["--host", &url, "toxic", "remove", "-n", "nothing", "redis"], None);
    assert!(stderr.contains("toxic not found (http 404)"), "{stderr}");
    let stderr = fails(&["--host", &url, "toxic", "add", "-t", "no_such_type", "redis"], None);
    assert!(stderr.contains("invalid toxic type (http 400)"), "{stderr}");

    ok(&server, &["toxic", "add", "-t", "latency", "redis"]);
    let stderr = fails(
        &["--host", &url, "toxic", "add", "-t", "latency", "-u", "-n", "latency_downstream", "redis"],
        None,
    );
    assert!(stderr.contains("toxic already exists (http 409)"), "{stderr}");
}

#[test]
fn an_unreachable_server_is_a_quick_clear_error() {
    let url = format!("http://127.0.0.1:{}", support::free_port());
    let started = Instant::now();
    let stderr = fails(&["--host", &url, "list"], None);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(stderr.contains(&format!("cannot list proxies on {url}")), "{stderr}");
    assert!(stderr.contains("--host or TOXIPROXY_URL"), "{stderr}");

    let stderr = fails(&["inspect", "redis"], Some(&url));
    assert!(stderr.contains(&format!("cannot inspect proxy 'redis' on {url}")), "{stderr}");
}

#[test]
fn bad_usage_is_refused_before_any_request() {
    // No server at all: these must fail on the command line, not on the network.
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    for args in [
        &["toxic", "add", "-t", "latency", "-u", "-d", "redis"][..],
        &["toxic", "add", "-t", "latency", "--tox", "2", "redis"],
        &["toxic", "add", "-t", "latency", "-a", "latency", "redis"],
        &["toxic", "update", "-n", "latency_downstream", "redis"],
        &["create", "redis", "-u", "127.0.0.1:1"],
    ] {
        let out = chaos(args, Some(&dead));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stderr = String::from_utf8(chaos(&["--host", "https://localhost:1", "list"], None).stderr).unwrap();
    assert!(stderr.contains("only http:// is supported"), "{stderr}");
}

#[test]
fn the_client_library_round_trips_every_endpoint() {
    use chaos_proxy::client::{NewToxic, ProxyUpdate, ToxicUpdate};

    let server = ChaosProxy::start(&[]);
    let api = Api::new(&server);
    let (rt, client) = (&api.rt, &api.client);
    assert!(rt.block_on(client.version()).unwrap().starts_with("2."));

    let new = |name: &str, upstream: &str| NewProxy {
        name: name.into(),
        listen: Some("127.0.0.1:0".into()),
        upstream: upstream.into(),
        enabled: None,
        half_close: None,
    };
    let created = rt.block_on(client.populate(&[new("a", "127.0.0.1:1"), new("b", "127.0.0.1:2")])).unwrap();
    assert_eq!(created.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(api.proxy_names(), ["a", "b"]);

    let toxic = NewToxic {
        r#type: "latency".into(),
        stream: Some(Stream::Upstream),
        toxicity: Some(0.5),
        attributes: json!({"latency": 10}).as_object().unwrap().clone(),
        ..NewToxic::default()
    };
    let added = rt.block_on(client.add_toxic("a", &toxic)).unwrap();
    assert_eq!(
        (added.name.as_str(), added.stream, added.toxicity),
        ("latency_upstream", Stream::Upstream, 0.5)
    );
    assert_eq!(added.attributes.get("jitter"), Some(&json!(0)), "every attribute is reported");
    assert_eq!(rt.block_on(client.toxics("a")).unwrap(), vec![added.clone()]);
    assert_eq!(rt.block_on(client.toxic("a", "latency_upstream")).unwrap(), added);

    let update = ToxicUpdate { toxicity: Some(1.0), ..ToxicUpdate::default() };
    let updated = rt.block_on(client.update_toxic("a", "latency_upstream", &update)).unwrap();
    assert_eq!((updated.toxicity, updated.attributes.get("latency")), (1.0, Some(&json!(10))));

    let disable = ProxyUpdate { enabled: Some(false), ..ProxyUpdate::default() };
    let b = rt.block_on(client.update_proxy("b", &disable)).unwrap();
    assert!(!b.enabled);
    assert_eq!(b.upstream, "127.0.0.1:2", "a partial update keeps the other fields");

    let stats = rt.block_on(client.stats("a")).unwrap();
    assert!(stats.is_object(), "stats of a proxy: {stats}");
    let err = rt.block_on(client.stats("nope")).unwrap_err();
    assert!(err.is_not_found(), "{err}");

    rt.block_on(client.reset()).unwrap();
    assert!(api.proxy("a").toxics.is_empty());
    assert!(api.proxy("b").enabled);

    rt.block_on(client.remove_toxic("a", "latency_upstream")).unwrap_err();
    rt.block_on(client.delete_proxy("a")).unwrap();
    assert!(rt.block_on(client.proxy("a")).unwrap_err().is_not_found());
    assert_eq!(api.proxy_names(), ["b"]);
}
