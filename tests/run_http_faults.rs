//! End-to-end test of L7 faults in `chaos run`: `experiments/http-faults.yaml` against the demo shop behind an
//! `http` proxy the run creates; the proxy's per-request signals are judged next to the load generator's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{
    ChaosProxy, DemoTarget, chaos_run, describe_output, free_port, output_within, read_journal, repo_path,
    temp_dir,
};

#[test]
fn http_faults_are_injected_seen_by_clients_and_by_the_proxy_and_removed() {
    let shop = DemoTarget::start();
    let server = ChaosProxy::start(&["--seed", "1"]);
    let out = temp_dir("http", "faults");
    let vars = [
        ("api", server.url()),
        ("upstream", shop.addr.to_string()),
        ("listen", format!("127.0.0.1:{}", free_port())),
    ];
    let mut cmd = chaos_run(None, &repo_path("experiments/http-faults.yaml"), &vars, &out);
    let output = output_within(&mut cmd, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(0), "{}", describe_output(&output));
    let j = read_journal(&out);
    assert_eq!(j["verdict"], "passed", "{}", j["reasons"]);
    let slos = j["slos"].as_array().unwrap();
    for name in ["availability", "proxy availability"] {
        let slo = slos.iter().find(|s| s["name"] == name).unwrap();
        let (good, total) = (slo["good"].as_u64().unwrap(), slo["total"].as_u64().unwrap());
        // About 5% of checkouts were aborted: some failed, most did not.
        assert!(total >= 100 && good < total && good * 100 >= total * 85, "{name}: {slo}");
    }
    let proxy_fast = slos.iter().find(|s| s["name"] == "proxy fast").unwrap();
    assert!(proxy_fast["total"].as_u64().unwrap() >= 100, "{proxy_fast}");
    // The toxics are gone and the run deleted its proxy.
    let (status, _) = support::http_json(server.api, "GET", "/proxies/shop-http", None);
    assert_eq!(status, 404, "the run's proxy should be deleted");
}
