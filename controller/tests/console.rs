//! The web console over HTTP against a real controller (in process, its console on 127.0.0.1:0) with real
//! in-process agents: who may see what (login, session cookie), what every POST must carry (the session's CSRF
//! token, a same-origin request, the confirmation), a halt through the console that reverts a real fault, every
//! page rendering its items with hostile names escaped, the live events stream, and bounded bodies.

mod console_support;
mod fleet_support;

use std::time::Duration;

use chaos_proto::v1::CreateScheduleRequest;
use console_support::{Http, controller};
use fleet_support::{
    API_NAME, API_TOKEN, Agent, AgentOptions, TempDir, Victim, WAIT, audit_of, get_run, start_run, submit,
    wait_connected, wait_state, wait_until, watch,
};
use hyper::StatusCode;

/// Pauses process `pid` on the agents labelled `role: web` for `duration`.
fn pause(pid: u32, duration: &str) -> String {
    format!(
        "apiVersion: chaos/v1
title: \"Pause {pid}\"
targets:
  victim: {{ processes: {{ pid: {pid} }}, hosts: {{ role: web }} }}
fire_and_forget: true
baseline: 0s
method:
  - {{ name: pause the victim, fault: pause, target: victim, duration: {duration} }}
recovery: 0s
"
    )
}

/// A run that waits and passes, with a hostile title.
const HOSTILE_TITLE: &str = "<img src=x onerror=alert(1)> & \"quotes\"";

fn hostile_wait() -> String {
    "apiVersion: chaos/v1
title: '<img src=x onerror=alert(1)> & \"quotes\"'
fire_and_forget: true
baseline: 0s
method:
  - { wait: 100ms }
recovery: 0s
"
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_pages_redirect_to_the_login_and_the_rest_is_refused() {
    let dir = TempDir::new("console-auth");
    let controller = controller(&dir).await;
    let http = Http::new(controller.ui_addr.unwrap());

    for page in ["/", "/runs", "/runs/r-1", "/agents", "/schedules", "/audit", "/controls", "/runs/r-1/halt"]
    {
        let r = http.get(page, None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{page}: {r:?}");
        assert_eq!(r.header("location"), "/login", "{page}");
    }
    let events = http.get("/runs/r-1/events", None).await;
    assert_eq!(events.status, StatusCode::UNAUTHORIZED, "{events:?}");
    for post in ["/controls/freeze", "/controls/halt-all", "/runs/r-1/halt", "/logout"] {
        let r = http.post(post, None, &[("confirm", "yes"), ("csrf", "x")], &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{post}: {r:?}");
        assert!(r.body.contains("log in first"), "{post}: {}", r.body);
    }
    // A made-up session cookie is no session.
    let forged = console_support::Session { cookie: "0".repeat(64), csrf: String::new() };
    assert_eq!(http.get("/runs", Some(&forged)).await.status, StatusCode::SEE_OTHER);

    // The login page itself is public, and carries no data.
    let login = http.get("/login", None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.contains("type=\"password\""), "{}", login.body);

    // A bad token: 401, the form again, no cookie; nothing in the audit log claims a login.
    let bad = http.post("/login", None, &[("token", "not-a-token-0123456789")], &[]).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED, "{bad:?}");
    assert!(bad.body.contains("invalid API token"), "{}", bad.body);
    assert!(bad.headers.get("set-cookie").is_none());
    let empty = http.post("/login", None, &[("token", "")], &[]).await;
    assert_eq!(empty.status, StatusCode::UNAUTHORIZED);

    // The right token: a session cookie (HttpOnly, SameSite=Strict), and the token in no URL.
    let good = http.post("/login", None, &[("token", API_TOKEN)], &[]).await;
    assert_eq!(good.status, StatusCode::SEE_OTHER, "{good:?}");
    assert_eq!(good.header("location"), "/runs");
    let cookie = good.header("set-cookie");
    assert!(cookie.starts_with("chaos_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(!cookie.contains(API_TOKEN) && !good.header("location").contains(API_TOKEN));
    let session = http.login(API_TOKEN).await;
    let runs = http.get("/runs", Some(&session)).await;
    assert_eq!(runs.status, StatusCode::OK);
    assert!(runs.body.contains(API_NAME), "the page names who is logged in");
    assert!(!runs.body.contains(API_TOKEN), "no page shows the token");
    // Every page carries the security headers.
    assert!(runs.header("content-security-policy").contains("default-src 'none'"), "{:?}", runs.headers);
    assert_eq!(runs.header("x-frame-options"), "DENY");
    let client = controller.client().await;
    let logins = audit_of(&client, "console_login").await;
    assert_eq!(logins.len(), 2, "{logins:#?}");
    assert!(logins.iter().all(|e| e.actor == API_NAME));

    // Logging out ends the session on the server, not only in the browser.
    let out = http.post("/logout", Some(&session), &[("csrf", &session.csrf)], &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{out:?}");
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    assert_eq!(http.get("/runs", Some(&session)).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_post_needs_the_sessions_csrf_token_the_same_origin_and_a_confirmation() {
    let dir = TempDir::new("console-csrf");
    let controller = controller(&dir).await;
    let client = controller.client().await;
    let http = Http::new(controller.ui_addr.unwrap());
    let session = http.login_ci().await;
    let other = http.login_ci().await;
    assert_ne!(session.csrf, other.csrf, "each session has its own CSRF token");

    let path = "/controls/freeze";
    let missing = http.post(path, Some(&session), &[("confirm", "yes"), ("reason", "r")], &[]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN, "{missing:?}");
    assert!(missing.body.contains("no CSRF token"), "{}", missing.body);
    let wrong = http.post(path, Some(&session), &[("csrf", &other.csrf), ("confirm", "yes")], &[]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "another session's token: {wrong:?}");
    assert!(wrong.body.contains("not this session"), "{}", wrong.body);
    let fields = [("csrf", session.csrf.as_str()), ("confirm", "yes"), ("reason", "game day")];
    let cross = http.post(path, Some(&session), &fields, &[("origin", "https://evil.example")]).await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN, "{cross:?}");
    assert!(cross.body.contains("cross-origin request refused"), "{}", cross.body);
    let cross_site = http.post(path, Some(&session), &fields, &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN, "{cross_site:?}");
    let unconfirmed = http.post(path, Some(&session), &[("csrf", &session.csrf)], &[]).await;
    assert_eq!(unconfirmed.status, StatusCode::BAD_REQUEST, "{unconfirmed:?}");
    assert!(unconfirmed.body.contains("not confirmed"), "{}", unconfirmed.body);
    assert!(
        controller_state(&http, &session).await.contains("Not frozen"),
        "nothing refused changed anything"
    );
    assert!(audit_of(&client, "freeze").await.is_empty());

    // The confirmation page's form, as a browser on the same origin posts it.
    let confirm = http.get(path, Some(&session)).await;
    assert!(confirm.body.contains("name=\"confirm\" value=\"yes\""), "{}", confirm.body);
    let origin = http.base.clone();
    let done = http.post(path, Some(&session), &fields, &[("origin", &origin)]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
    assert!(controller_state(&http, &session).await.contains("Frozen by ci"));
    let freezes = audit_of(&client, "freeze").await;
    assert_eq!(
        (freezes.len(), freezes[0].actor.as_str(), freezes[0].detail.as_str()),
        (1, API_NAME, "game day")
    );
    let page = http.get("/runs", Some(&session)).await;
    assert!(page.body.contains("class=\"banner frozen\""), "every page shows the freeze");
    let code = start_run(&client, &hostile_wait(), 1, false).await.unwrap_err().code();
    assert_eq!(code, tonic::Code::FailedPrecondition, "frozen through the API's own flag");

    let fields = [("csrf", session.csrf.as_str()), ("confirm", "yes"), ("reason", "done")];
    let thawed = http.post("/controls/unfreeze", Some(&session), &fields, &[]).await;
    assert_eq!(thawed.status, StatusCode::SEE_OTHER, "{thawed:?}");
    assert!(controller_state(&http, &session).await.contains("Not frozen"));
    assert_eq!(audit_of(&client, "unfreeze").await[0].actor, API_NAME);
}

async fn controller_state(http: &Http, session: &console_support::Session) -> String {
    let page = http.get("/controls", Some(session)).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    page.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halting_a_run_from_the_console_reverts_its_fault_and_is_audited_under_the_session() {
    let dir = TempDir::new("console-halt");
    let controller = controller(&dir).await;
    let client = controller.client().await;
    let web = Agent::start(controller.addr, "web-1", &[("role", "web")]).await;
    wait_connected(&client, &["web-1"]).await;
    let victim = Victim::spawn();
    let run = start_run(&client, &pause(victim.pid(), "30s"), 3, false).await.unwrap();
    wait_until("the long pause to apply", WAIT, || victim.stopped()).await;
    let http = Http::new(controller.ui_addr.unwrap());
    let session = http.login_ci().await;

    let page = http.get(&format!("/runs/{}", run.id), Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"halt-button\""), "a running run has a halt button: {}", page.body);
    let agents = http.get("/agents", Some(&session)).await;
    assert!(agents.body.contains("Faults in force (1)"), "{}", agents.body);
    assert!(agents.body.contains(&format!("href=\"/runs/{}\"", run.id)), "the fault names its run");
    let confirm = http.get(&format!("/runs/{}/halt", run.id), Some(&session)).await;
    assert!(confirm.body.contains("Halt run <strong>"), "{}", confirm.body);
    assert!(victim.stopped(), "asking for the confirmation halts nothing");

    let path = format!("/runs/{}/halt", run.id);
    let fields = [("csrf", session.csrf.as_str()), ("confirm", "yes"), ("reason", "from the console")];
    let halted = http.post(&path, Some(&session), &fields, &[]).await;
    assert_eq!(halted.status, StatusCode::SEE_OTHER, "{halted:?}");
    assert_eq!(halted.header("location"), format!("/runs/{}", run.id));
    assert!(victim.running(), "reverted before the console answered");
    assert_eq!(web.active(), 0);
    let ended = wait_state(&client, &run.id, "halted").await;
    assert_eq!(ended.verdict, "inconclusive");
    let halts = audit_of(&client, "halt_run").await;
    assert!(
        halts.iter().any(|e| e.run_id == run.id && e.actor == API_NAME && e.detail == "from the console"),
        "{halts:#?}"
    );
    let after = http.get(&format!("/runs/{}", run.id), Some(&session)).await;
    assert!(!after.body.contains("id=\"halt-button\""), "a halted run has no halt button");
    assert!(after.body.contains("s-halted"), "{}", after.body);
    let unknown = http.post("/runs/r-nope/halt", Some(&session), &fields, &[]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");
    assert!(unknown.body.contains("run r-nope not found"), "{}", unknown.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_all_from_the_console_reverts_every_agent_and_can_freeze() {
    let dir = TempDir::new("console-halt-all");
    let controller = controller(&dir).await;
    let client = controller.client().await;
    let web = Agent::start(controller.addr, "web-1", &[("role", "web")]).await;
    wait_connected(&client, &["web-1"]).await;
    let victim = Victim::spawn();
    let run = start_run(&client, &pause(victim.pid(), "30s"), 3, false).await.unwrap();
    wait_until("the long pause to apply", WAIT, || victim.stopped()).await;
    let http = Http::new(controller.ui_addr.unwrap());
    let session = http.login_ci().await;

    let fields = [("csrf", session.csrf.as_str()), ("confirm", "yes"), ("reason", "pager"), ("freeze", "on")];
    let done = http.post("/controls/halt-all", Some(&session), &fields, &[]).await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert!(done.body.contains(&run.id) && done.body.contains("web-1"), "{}", done.body);
    wait_until("the victim to resume", WAIT, || victim.running()).await;
    assert_eq!(web.active(), 0);
    wait_state(&client, &run.id, "halted").await;
    let halts = audit_of(&client, "halt_all_done").await;
    assert!(
        halts.iter().any(|e| e.actor == API_NAME && e.detail.starts_with("pager: 1 runs halted")),
        "{halts:#?}"
    );
    assert_eq!(audit_of(&client, "freeze").await[0].actor, API_NAME);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_its_items_with_hostile_names_escaped() {
    let dir = TempDir::new("console-pages");
    let controller = controller(&dir).await;
    let client = controller.client().await;
    let mut options = AgentOptions::new("db-1", &[("role", "<script>alert('label')</script>")]);
    options.labels.insert("zone".into(), "\"><b>eu</b>".into());
    let _agent = Agent::start_with(controller.addr, options).await;
    wait_connected(&client, &["db-1"]).await;
    let run = start_run(&client, &hostile_wait(), 5, false).await.unwrap();
    assert_eq!(watch(&client, &run.id).await.last().unwrap().name, "passed");
    let experiment = client.clone().submit_experiment(submit(&hostile_wait())).await.unwrap().into_inner();
    let schedule = CreateScheduleRequest {
        name: "<b>nightly</b>".into(),
        experiment_id: experiment.id.clone(),
        cron: "0 3 * * *".into(),
        timezone: "Europe/Paris".into(),
        windows: vec!["Mon-Fri 02:00-05:00".into()],
        blackout_dates: vec!["2026-12-25".into()],
        ..CreateScheduleRequest::default()
    };
    client.clone().create_schedule(schedule).await.unwrap();
    let http = Http::new(controller.ui_addr.unwrap());
    let session = http.login_ci().await;
    let escaped_title = "&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quotes&quot;";

    let check = |what: &str, body: &str, present: &[&str], absent: &[&str]| {
        for p in present {
            assert!(body.contains(p), "{what}: {p:?} missing from\n{body}");
        }
        for a in absent {
            assert!(!body.contains(a), "{what}: {a:?} unescaped in\n{body}");
        }
    };
    let runs = http.get("/runs", Some(&session)).await;
    check("runs", &runs.body, &[&run.id, escaped_title, "s-passed", API_NAME], &[HOSTILE_TITLE, "<img"]);
    let filtered = http.get("/runs?state=halted", Some(&session)).await;
    assert!(filtered.body.contains("No runs."), "{}", filtered.body);
    let bad_state = http.get("/runs?state=exploded", Some(&session)).await;
    assert_eq!(bad_state.status, StatusCode::BAD_REQUEST);
    assert!(bad_state.body.contains("unknown run state &quot;exploded&quot;"), "{}", bad_state.body);

    let page = http.get(&format!("/runs/{}", run.id), Some(&session)).await;
    check("run", &page.body, &[escaped_title, "id=\"report\"", "data-state=\"finished\""], &["<img"]);
    let report = http.get(&format!("/runs/{}/report", run.id), Some(&session)).await;
    assert_eq!(report.status, StatusCode::OK);
    check("report", &report.body, &[escaped_title], &["<img"]);
    assert!(report.body.to_lowercase().contains("passed"), "the verdict: {}", report.body);
    assert_eq!(report.header("x-frame-options"), "SAMEORIGIN");
    let missing = http.get("/runs/r-none", Some(&session)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let agents = http.get("/agents", Some(&session)).await;
    check(
        "agents",
        &agents.body,
        &[
            "db-1",
            "&lt;script&gt;alert(&#39;label&#39;)&lt;/script&gt;",
            "&quot;&gt;&lt;b&gt;eu&lt;/b&gt;",
            "h-connected",
        ],
        &["<script>alert", "<b>eu"],
    );
    let schedules = http.get("/schedules", Some(&session)).await;
    check(
        "schedules",
        &schedules.body,
        &["&lt;b&gt;nightly&lt;/b&gt;", "Europe/Paris", "Mon-Fri 02:00-05:00", "2026-12-25", "<li>20"],
        &["<b>nightly"],
    );
    let audit = http.get("/audit", Some(&session)).await;
    check("audit", &audit.body, &["schedule_created", "console_login", "&lt;b&gt;nightly"], &["<b>nightly"]);
    let only = http.get("/audit?action=schedule_created&actor=ci", Some(&session)).await;
    assert!(only.body.contains("schedule_created") && !only.body.contains("data-action=\"console_login\""));
    let about_run = http.get(&format!("/audit?run={}", run.id), Some(&session)).await;
    assert!(!about_run.body.contains("data-action=\"schedule_created\""), "{}", about_run.body);
    let hostile_filter = http.get("/audit?actor=%3Cscript%3E", Some(&session)).await;
    check("audit filter", &hostile_filter.body, &["value=\"&lt;script&gt;\""], &["<script>"]);
    let controls = http.get("/controls", Some(&session)).await;
    check("controls", &controls.body, &["Not frozen", "id=\"halt-all-button\""], &[]);
    let nowhere = http.get("/nowhere", Some(&session)).await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_events_stream_as_server_sent_events_ending_after_finished() {
    let dir = TempDir::new("console-events");
    let controller = controller(&dir).await;
    let client = controller.client().await;
    let run = start_run(&client, &hostile_wait(), 5, false).await.unwrap();
    let events = watch(&client, &run.id).await;
    let http = Http::new(controller.ui_addr.unwrap());
    let session = http.login_ci().await;
    let stream = http.get(&format!("/runs/{}/events", run.id), Some(&session)).await;
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(stream.header("content-type"), "text/event-stream");
    let data: Vec<serde_json::Value> = stream
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(data.len(), events.len(), "every stored event once:\n{}", stream.body);
    assert_eq!(data.last().unwrap()["kind"], "finished");
    assert_eq!(data.last().unwrap()["name"], "passed");
    assert!(stream.body.contains("event: run\n"), "{}", stream.body);
    let unknown = http.get("/runs/r-none/events", Some(&session)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");
    assert_eq!(get_run(&client, &run.id).await.state, "passed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_fields_are_bounded() {
    let dir = TempDir::new("console-bounds");
    let controller = controller(&dir).await;
    let http = Http::new(controller.ui_addr.unwrap());
    let huge = "x".repeat(64 * 1024);
    let r = http.post("/login", None, &[("token", &huge)], &[]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    // The unread rest of the body ends the connection, and the answer says so: the client's next request
    // must not go into that socket.
    assert_eq!(r.headers.get("connection").map(|v| v.as_bytes()), Some(&b"close"[..]), "{r:?}");
    let session = http.login_ci().await;
    let long = "r".repeat(600);
    let fields = [("csrf", session.csrf.as_str()), ("confirm", "yes"), ("reason", long.as_str())];
    let r = http.post("/controls/freeze", Some(&session), &fields, &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.body.contains("the reason is 600 bytes long: at most 500"), "{}", r.body);
    let r = http.get("/runs?page=nope", Some(&session)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.body.contains("malformed query"), "{}", r.body);
    let r = http.get("/runs?page=100000", Some(&session)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    let slow = tokio::time::timeout(Duration::from_secs(1), http.get("/login", None)).await;
    assert!(slow.is_ok(), "the console still answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_the_console_uses_the_apis_certificate_and_a_secure_cookie() {
    use std::sync::Arc;

    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::rustls;

    let dir = TempDir::new("console-tls");
    let hosts = ["127.0.0.1".to_string()];
    let certs = chaos_proto::certs::generate(&dir.path().join("certs"), &hosts, 1, false).unwrap();
    let mut cfg = fleet_support::config(&dir.path().join("data"), fleet_support::fleet(200, 2000));
    cfg.tls = Some(chaos_proto::transport::ServerTls {
        cert: certs.controller_cert.clone(),
        key: certs.controller_key.clone(),
        client_ca: None,
    });
    cfg.ui_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let controller = fleet_support::RunningController::start(cfg).await;
    let ui = controller.ui_addr.unwrap();

    // Plain HTTP on the console's port gets no page.
    let request =
        hyper::Request::get(format!("http://{ui}/login")).body(http_body_util::Full::default()).unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let answered = tokio::time::timeout(WAIT, client.request(request)).await.unwrap();
    assert!(answered.is_err(), "plain HTTP was answered: {answered:?}");

    // Over TLS, trusting the development CA: the login sets a Secure cookie; https://HOST is the origin.
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&certs.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(ui).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    let body = console_support::form(&[("token", API_TOKEN)]);
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: {ui}\r\nOrigin: https://{ui}\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response)).await.unwrap().unwrap();
    assert!(response.starts_with("HTTP/1.1 303"), "{response}");
    let cookie = response.lines().find(|l| l.to_lowercase().starts_with("set-cookie:")).unwrap();
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");
}
