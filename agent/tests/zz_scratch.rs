#![allow(clippy::unwrap_used)]
use chaos_agent::spec::FaultSpec;
#[test]
fn scratch() {
    for t in [
        "kind: cpu-stress\nworkers: 2\ncores: 2\n",
        "workers: 2\nkind: cpu-stress\nload: 500\n",
        "kind: process-pause\ntarget:\n  pid: 5\ncount: \"150%\"\n",
        "kind: process-pause\ntarget:\n  pod: 5\n",
        "kind: process-kill\ncount: 2\n",
        "kind: nope\n",
        "kind: network-loss\npercent: 5\nfilter: { host: [10.0.0.2] }\n",
        "kind: disk-fill\npath: /tmp\nsize: 12XB\n",
        "- a\n",
        "kind: [1]\n",
        "{\"kind\": \"cpu-stress\", \"cores\": 1}",
        "kind: process-kill\ntarget: {pid: 5}\ncount: 2\nsignal: TERM\n",
        "kind: process-kill\ntarget: {pid: 5}\ncount: 2\nsignal: TERM\nkind: cpu-stress\n",
    ] {
        println!(
            "{t:?} => {}\n",
            FaultSpec::parse(t).map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())
        );
    }
}
