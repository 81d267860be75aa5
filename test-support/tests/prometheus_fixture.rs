//! The Prometheus fixture: a backfilled server answers with the history it was given, at the given time.

use chaos_test_support::prometheus::{Prometheus, available};
use chaos_test_support::skip;

#[test]
fn a_backfilled_server_answers_from_its_history() {
    if !skip::require("prometheus", available()) {
        return;
    }
    // 10 requests a second for 10 minutes, from t0.
    let t0 = 1_700_000_000u64;
    let mut om = String::from("# HELP req_total requests\n# TYPE req_total counter\n");
    for minute in 0..=10u64 {
        om.push_str(&format!("req_total {} {}\n", minute * 600, t0 + minute * 60));
    }
    om.push_str("# EOF\n");
    let server = Prometheus::backfilled(&om, "global: {scrape_interval: 1m}\n");
    let answer = server.query("sum(rate(req_total[5m]))", (t0 + 600) as f64);
    assert!(answer.contains(r#""value":[1700000600,"10"]"#), "{answer}\n{}", server.log());
}
