//! The game-day plan: a full plan read with every field; bad plans refused at file:line:column (unknown keys,
//! wrong kinds, duplicates, missing experiments, bad experiments with their own positions, mistyped `--var`);
//! the JSON Schema; the example plan in experiments/gameday/ checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use chaos_controller::gameday::plan::{self, OnFailure, Role};
use chaos_test_support::TempDir;

const GOOD: &str = "apiVersion: chaos/v1
kind: GameDay
title: Q3 checkout game day
description: Can checkout take a worker loss?
participants:
  - { name: Ada, role: facilitator }
  - { name: Linus, role: on-call }
scenarios:
  - name: worker dies
    experiment: exp/a.yaml
    vars: { shop: \"http://10.0.0.2:8080\", rate: 5 }
    expect: [CheckoutErrorBudgetBurn, CheckoutLatency]
    pause_before: 2s
    pause_after: 1m
    on_failure: stop
  - name: again
    experiment: exp/a.yaml
action_items:
  - Link the runbooks
";

fn errors(text: &str) -> String {
    plan::parse("plan.yaml", text).unwrap_err().to_string()
}

#[test]
fn a_full_plan_reads_with_every_field() {
    let p = plan::parse("plan.yaml", GOOD).unwrap();
    assert_eq!(p.title, "Q3 checkout game day");
    assert_eq!(p.participants[1].role, Role::OnCall);
    let s = &p.scenarios[0];
    assert_eq!(s.vars["rate"], "5", "scalars are read as text");
    assert_eq!(s.expect, ["CheckoutErrorBudgetBurn", "CheckoutLatency"]);
    assert_eq!(s.pause_before.unwrap().0, Duration::from_secs(2));
    assert_eq!(s.pause_after.unwrap().0, Duration::from_secs(60));
    assert_eq!(s.on_failure, OnFailure::Stop);
    assert_eq!(p.scenarios[1].on_failure, OnFailure::Continue, "continue is the default");
    assert_eq!(p.action_items, ["Link the runbooks"]);
    // The same plan as JSON.
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(plan::parse("plan.json", &json).unwrap(), p);
}

#[test]
fn bad_plans_are_refused_at_their_position() {
    let cases: &[(&str, &str)] = &[
        (
            "apiVersion: chaos/v1\nkind: GameDay\ntitle: t\nscenarios:\n  - { name: a, experiment: a.yaml, paws: 1s }\n",
            "plan.yaml:5:36: unknown field `paws`, expected one of `name`, `experiment`",
        ),
        (
            "apiVersion: chaos/v1\nkind: Experiment\ntitle: t\nscenarios:\n  - { name: a, experiment: a.yaml }\n",
            "plan.yaml:2:7: kind must be GameDay, found \"Experiment\"; run experiments with chaos run",
        ),
        (
            "apiVersion: chaos/v2\nkind: GameDay\ntitle: t\nscenarios:\n  - { name: a, experiment: a.yaml }\n",
            "plan.yaml:1:13: apiVersion must be chaos/v1",
        ),
        (
            "apiVersion: chaos/v1\nkind: GameDay\ntitle: t\nparticipants:\n  - { name: Ada, role: boss }\nscenarios:\n  - { name: a, experiment: a.yaml }\n",
            "plan.yaml:5:24: unknown variant `boss`, expected one of `facilitator`",
        ),
        (
            "apiVersion: chaos/v1\nkind: GameDay\ntitle: t\nscenarios:\n  - { name: a, experiment: a.yaml }\n  - { name: a, experiment: b.yaml }\n",
            "plan.yaml:6:13: scenario \"a\" is named twice",
        ),
        (
            "apiVersion: chaos/v1\nkind: GameDay\ntitle: t\nscenarios:\n  - { name: a, experiment: a.yaml, pause_after: 5 }\n",
            "plan.yaml:5:49: a duration needs a unit",
        ),
        (
            "apiVersion: chaos/v1\nkind: GameDay\ntitle: t\nscenarios:\n  - { name: a, experiment: a.yaml, pause_after: 25h }\n",
            "plan.yaml:5:49: pause_after is 90000s, at most 24h",
        ),
        (
            "apiVersion: chaos/v1\nkind: GameDay\ntitle: t\nscenarios:\n  - { name: a, experiment: /etc/a.yaml }\n",
            "plan.yaml:5:28: scenario \"a\": experiment \"/etc/a.yaml\" is absolute",
        ),
        (
            "apiVersion: chaos/v1\nkind: GameDay\ntitle: t\nscenarios: []\n",
            "plan.yaml:4:12: a game day needs at least one scenario",
        ),
        (
            "apiVersion: chaos/v1\nkind: GameDay\ntitle: t\nscenarios:\n  - { name: a, experiment: a.yaml, on_failure: retry }\n",
            "plan.yaml:5:48: unknown variant `retry`, expected `continue` or `stop`",
        ),
        ("- a\n- b\n", "plan.yaml:1:1: expected a game-day plan"),
        ("apiVersion: [\n", "plan.yaml:1:13: unclosed bracket"),
    ];
    for (text, expected) in cases {
        let got = errors(text);
        assert!(got.starts_with(expected), "for:\n{text}\nexpected {expected:?}\ngot {got:?}");
    }
}

#[test]
fn loading_checks_every_experiment_before_anything_runs() {
    let dir = TempDir::new("gameday-plan");
    let root = dir.path();
    std::fs::create_dir_all(root.join("exp")).unwrap();
    let experiment = "apiVersion: chaos/v1\ntitle: ok\nvars: { shop: \"http://127.0.0.1:1\" }\nfire_and_forget: true\n\
                      method:\n  - { name: wait, wait: 1s }\n";
    std::fs::write(root.join("exp/a.yaml"), experiment).unwrap();
    std::fs::write(root.join("plan.yaml"), GOOD.replace(", rate: 5", "")).unwrap();
    let loaded = plan::load(&root.join("plan.yaml"), &[]).unwrap();
    assert_eq!(loaded.experiments.len(), 1, "an experiment named twice is read once");
    assert_eq!(loaded.experiments[0].path, "exp/a.yaml");

    // A broken experiment: its own file:line:column; a missing one: at the scenario's `experiment:`.
    std::fs::write(root.join("exp/a.yaml"), experiment.replace("title: ok", "title: ok\ntitel: typo"))
        .unwrap();
    let plan_text = GOOD.replace(", rate: 5", "").replace(
        "  - name: again\n    experiment: exp/a.yaml",
        "  - name: again\n    experiment: exp/missing.yaml",
    );
    std::fs::write(root.join("plan.yaml"), plan_text).unwrap();
    let got = plan::load(&root.join("plan.yaml"), &[]).unwrap_err().to_string();
    let a = root.join("exp/a.yaml").display().to_string();
    assert!(got.contains(&format!("{a}:3:1: unknown field `titel`")), "{got}");
    let p = root.join("plan.yaml").display().to_string();
    assert!(got.contains(&format!("{p}:17:17: scenario \"again\": experiment")), "{got}");
    assert!(got.contains("missing.yaml: cannot read"), "{got}");
}

#[test]
fn a_var_goes_to_the_scenarios_declaring_it_and_a_mistyped_one_is_refused() {
    let dir = TempDir::new("gameday-vars");
    let root = dir.path();
    let with = "apiVersion: chaos/v1\ntitle: with\nvars: { shop: \"http://127.0.0.1:1\" }\nfire_and_forget: true\n\
                method:\n  - { name: wait, wait: \"${shop}\" }\n";
    let without = "apiVersion: chaos/v1\ntitle: without\nfire_and_forget: true\nmethod:\n  - { name: wait, wait: 1s }\n";
    std::fs::write(root.join("with.yaml"), with).unwrap();
    std::fs::write(root.join("without.yaml"), without).unwrap();
    let plan_text = "apiVersion: chaos/v1\nkind: GameDay\ntitle: t\nscenarios:\n  - { name: a, experiment: with.yaml }\n  - { name: b, experiment: without.yaml }\n";
    std::fs::write(root.join("plan.yaml"), plan_text).unwrap();
    // `${shop}` is a bad duration unless overridden with one; `without.yaml` does not declare it and is left alone.
    let bad = plan::load(&root.join("plan.yaml"), &[]).unwrap_err().to_string();
    assert!(bad.contains("with.yaml:6:25:"), "{bad}");
    plan::load(&root.join("plan.yaml"), &[("shop".into(), "1s".into())]).unwrap();
    let typo =
        plan::load(&root.join("plan.yaml"), &[("shop".into(), "1s".into()), ("shpo".into(), "1".into())]);
    assert_eq!(
        typo.unwrap_err().to_string(),
        "--var: shpo: no experiment of the plan declares it in its `vars:`"
    );
}

#[test]
fn the_schema_describes_the_plan_and_the_example_plan_checks() {
    let schema = plan::json_schema();
    let text = schema.to_string();
    for key in
        ["participants", "scenarios", "pause_after", "pause_before", "on_failure", "expect", "action_items"]
    {
        assert!(text.contains(key), "{key} missing from the schema");
    }
    assert_eq!(schema["additionalProperties"], false, "unknown keys are refused: {schema:#}");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/gameday/plan.yaml");
    let loaded = plan::load(&example, &[]).unwrap();
    assert_eq!(loaded.plan.scenarios.len(), 3);
    assert_eq!(loaded.experiments.len(), 3);
}
