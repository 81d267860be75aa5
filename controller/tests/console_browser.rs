//! The web console in a real browser: Debian's headless `chromium`, driven through `chromedriver` (W3C
//! WebDriver), against a real controller (in process, console on 127.0.0.1:0) with a real agent holding a real
//! fault (a `sleep` child paused with SIGSTOP) while load runs against a local HTTP server. An unauthenticated
//! browser is sent to the login form and sees no run; after logging in with an API token it watches the run
//! live (its SLO chart gains points, the fault window is shaded), clicks halt, confirms, and the test checks
//! that the run ended halted and that the process runs again on the host.
//!
//! Needs `chromium` and `chromium-driver` (`CHAOS_TEST_SKIP=chromium` excuses it, nothing else does).
//! `UPDATE_SCREENSHOTS=1` saves the live run page as `docs/img/console.png`.

mod console_support;
mod fleet_support;

use std::time::Duration;

use console_support::{Browser, browser_available, controller, docs_img, wait_page};
use fleet_support::{
    API_NAME, API_TOKEN, Agent, TempDir, Victim, WAIT, audit_of, http_ok, start_run, wait_connected,
    wait_state, wait_until,
};

/// Load on a local server, an availability SLO, and a long pause of the victim on the `role: web` agent.
fn live_run(pid: u32, shop: std::net::SocketAddr) -> String {
    format!(
        "apiVersion: chaos/v1
title: Checkout keeps answering while a web process is paused
hypothesis: the shop keeps answering while one web process is paused
targets:
  web: {{ processes: {{ pid: {pid} }}, hosts: {{ role: web }} }}
load:
  - {{ name: users, http: {{ url: \"http://{shop}/\" }}, rate: 20/s, timeout: 2s }}
slos:
  - {{ name: availability, signal: errors, objective: 90%, source: {{ load: users }} }}
baseline: 1s
method:
  - {{ name: pause web, fault: pause, target: web, duration: 60s }}
recovery: 0s
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_watches_a_run_live_and_halts_it_and_the_fault_is_reverted() {
    if !chaos_test_support::skip::require("chromium", browser_available()) {
        return;
    }
    let dir = TempDir::new("console-browser");
    let controller = controller(&dir).await;
    let client = controller.client().await;
    let web = Agent::start(controller.addr, "web-1", &[("role", "web")]).await;
    wait_connected(&client, &["web-1"]).await;
    let victim = Victim::spawn();
    let (shop, _requests) = http_ok().await;
    let run = start_run(&client, &live_run(victim.pid(), shop), 42, false).await.unwrap();
    let base = format!("http://{}", controller.ui_addr.unwrap());
    let browser = Browser::start().await;

    // Unauthenticated: every page leads to the login form, which shows nothing of the controller's state.
    browser.goto(&format!("{base}/runs/{}", run.id)).await;
    assert_eq!(browser.url().await, format!("{base}/login"));
    let source = browser.source().await;
    assert!(!source.contains(&run.id), "the login page shows no run:\n{source}");
    let token = browser.find("#token").await;
    browser.type_into(&token, "not-a-valid-token-0123456789").await;
    browser.click(&browser.find("#login").await).await;
    let refused = browser.find("p.error").await;
    assert_eq!(browser.text(&refused).await, "invalid API token");

    // Log in; the runs page lists the run; open it.
    browser.type_into(&browser.find("#token").await, API_TOKEN).await;
    browser.click(&browser.find("#login").await).await;
    let link = browser.find(&format!("tr[data-run=\"{}\"] a", run.id)).await;
    assert_eq!(browser.url().await, format!("{base}/runs"));
    let cookie = browser.execute("return document.cookie").await;
    assert_eq!(cookie, "", "the session cookie is HttpOnly: scripts cannot read it");
    browser.click(&link).await;

    // Live: the SLO's chart gains a point a second from the run's events, the pause is shaded as a fault window.
    wait_until("the pause to stop the victim", WAIT, || victim.stopped()).await;
    wait_page(
        &browser,
        "the availability chart with 3 points and the fault window",
        Duration::from_secs(20),
        "const f = document.querySelector('figure.chart[data-slo=\"availability\"]');
         return f && Number(f.dataset.points) >= 3 && document.querySelector('rect.fault[data-fault=\"pause web\"]')
           && document.getElementById('live').dataset.state === 'live';",
    )
    .await;
    let caption = browser.text(&browser.find("figure.chart figcaption").await).await;
    assert!(caption.starts_with("availability: ") && caption.ends_with("(objective 90%)"), "{caption}");
    let log = browser.text(&browser.find("#log").await).await;
    assert!(log.contains("fault injected: pause web"), "{log}");
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        let png = browser.screenshot().await;
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot: {} bytes", png.len());
        std::fs::write(docs_img("console.png"), png).unwrap();
    }
    assert!(victim.stopped(), "still faulted: nothing halted it yet");

    // Halt: the button leads to a confirmation; confirming halts the run through the controller.
    browser.click(&browser.find("#halt-button").await).await;
    assert_eq!(browser.url().await, format!("{base}/runs/{}/halt", run.id));
    assert!(victim.stopped(), "the confirmation page halts nothing");
    let reason = browser.find("input[name=reason]").await;
    browser.type_into(&reason, "halted from a browser").await;
    browser.click(&browser.find("#confirm").await).await;
    let state = browser.find("#run-state").await;
    assert_eq!(browser.url().await, format!("{base}/runs/{}", run.id));
    assert_eq!(browser.text(&state).await, "halted");

    let ended = wait_state(&client, &run.id, "halted").await;
    assert_eq!(ended.verdict, "inconclusive", "{ended:#?}");
    assert!(victim.running(), "the fault was reverted on the host");
    assert_eq!(web.active(), 0, "the agent holds nothing");
    let halts = audit_of(&client, "halt_run").await;
    assert!(
        halts
            .iter()
            .any(|e| e.run_id == run.id && e.actor == API_NAME && e.detail == "halted from a browser"),
        "{halts:#?}"
    );
    // The finished run's page shows its report, framed (the session's cookie reaches the sandboxed frame).
    let frame = browser.find("iframe#report").await;
    let report = chaos_test_support::wait::wait_for("the report in its frame", WAIT, || async {
        let html = browser.frame_source(&frame).await;
        html.contains("Checkout keeps answering").then_some(html)
    })
    .await;
    assert!(report.to_lowercase().contains("inconclusive"), "the verdict in the report:\n{report}");
    browser.quit().await;
}
