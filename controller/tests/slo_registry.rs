//! The SLO registry through a real controller (gRPC on 127.0.0.1:0, SQLite in a temp dir): `ApplySlos`
//! versions every change and nothing else, `ListSlos` shows the current ones, `SloHistory` keeps every version
//! with its source text, `DeleteSlo` is a new version; bad files are refused whole with file:line:column;
//! every call needs a token; changes are audited; everything survives a restart on the same store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_support;

use std::time::Duration;

use chaos_proto::v1::{
    ApplySlosRequest, DeleteSloRequest, ListSlosRequest, SloFile, SloHistoryRequest, SloVersion,
};
use fleet_support::{API_NAME, Client, RunningController, TempDir, audit_of, config, fleet};
use tonic::Code;

/// The example SLO file of the repository (checkout/availability 99.9 %/30d events, checkout/latency
/// 99 %/7d latency).
fn checkout() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../experiments/slos/checkout.yaml");
    std::fs::read_to_string(path).unwrap()
}

fn file(name: &str, source: &str) -> SloFile {
    SloFile { file: name.into(), source: source.into() }
}

async fn apply(client: &Client, files: Vec<SloFile>) -> Result<Vec<(String, u32, String)>, tonic::Status> {
    let answer = client.clone().apply_slos(ApplySlosRequest { files }).await?.into_inner();
    Ok(answer.slos.into_iter().map(|s| (s.id, s.version, s.outcome)).collect())
}

async fn list(client: &Client) -> Vec<SloVersion> {
    let request = ListSlosRequest { with_definitions: true };
    client.clone().list_slos(request).await.unwrap().into_inner().slos
}

async fn history(client: &Client, id: &str, version: Option<u32>) -> Result<Vec<SloVersion>, tonic::Status> {
    let request = SloHistoryRequest { id: id.into(), version };
    Ok(client.clone().slo_history(request).await?.into_inner().versions)
}

fn outcome(id: &str, version: u32, outcome: &str) -> (String, u32, String) {
    (id.to_string(), version, outcome.to_string())
}

/// (id, version, objective, period, SLI kind) of each listed SLO.
fn summary(slos: &[SloVersion]) -> Vec<(String, u32, f64, String, String)> {
    slos.iter()
        .map(|s| (s.id.clone(), s.version, s.objective, s.period.clone(), s.sli_kind.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_are_versioned_listed_audited_and_kept_across_a_restart() {
    let dir = TempDir::new("slo-registry");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2_000))).await;
    let client = controller.client().await;
    assert!(list(&client).await.is_empty());

    let v1 = checkout();
    let applied = apply(&client, vec![file("checkout.yaml", &v1)]).await.unwrap();
    assert_eq!(
        applied,
        [outcome("checkout/availability", 1, "created"), outcome("checkout/latency", 1, "created")]
    );
    let listed = list(&client).await;
    assert_eq!(
        summary(&listed),
        [
            ("checkout/availability".into(), 1, 0.999, "30d".into(), "events".into()),
            ("checkout/latency".into(), 1, 0.99, "7d".into(), "latency".into()),
        ]
    );
    for slo in &listed {
        assert_eq!(
            (slo.applied_by.as_str(), slo.file.as_str(), slo.deleted),
            (API_NAME, "checkout.yaml", false)
        );
        assert!(slo.applied_unix_ms > 1_700_000_000_000, "{}", slo.applied_unix_ms);
        // The normalised definition, as the controller stores it.
        let def: serde_json::Value = serde_json::from_str(&slo.definition_json).unwrap();
        assert_eq!(def["service"], "checkout");
        assert_eq!(slo.source, "", "a listing carries no source text");
    }
    // Without definitions asked for: the same listing without them.
    let short = client.clone().list_slos(ListSlosRequest::default()).await.unwrap().into_inner().slos;
    assert_eq!(summary(&short), summary(&listed));
    assert!(short.iter().all(|s| s.definition_json.is_empty()));

    // The same file again: nothing new, nothing audited.
    let again = apply(&client, vec![file("checkout.yaml", &v1)]).await.unwrap();
    assert_eq!(
        again,
        [outcome("checkout/availability", 1, "unchanged"), outcome("checkout/latency", 1, "unchanged")]
    );

    // The availability objective changed: version 2 of it only.
    let v2 = v1.replacen("objective: 99.9%", "objective: 99.5%", 1);
    assert_ne!(v1, v2);
    let changed = apply(&client, vec![file("checkout-v2.yaml", &v2)]).await.unwrap();
    assert_eq!(
        changed,
        [outcome("checkout/availability", 2, "updated"), outcome("checkout/latency", 1, "unchanged")]
    );
    let versions = history(&client, "checkout/availability", None).await.unwrap();
    let seen: Vec<_> =
        versions.iter().map(|v| (v.version, v.objective, v.file.as_str(), v.deleted)).collect();
    assert_eq!(seen, [(1, 0.999, "checkout.yaml", false), (2, 0.995, "checkout-v2.yaml", false)]);
    assert!(versions.iter().all(|v| v.source.is_empty() && v.source_sha256.len() == 64));
    assert_ne!(versions[0].source_sha256, versions[1].source_sha256);
    // One version asked for: with the text it was applied from.
    let first = history(&client, "checkout/availability", Some(1)).await.unwrap();
    assert_eq!((first.len(), first[0].version, first[0].source.as_str()), (1, 1, v1.as_str()));
    let second = history(&client, "checkout/availability", Some(2)).await.unwrap();
    assert_eq!(second[0].source, v2);
    let missing = history(&client, "checkout/availability", Some(3)).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert_eq!(missing.message(), "SLO version checkout/availability v3 not found");

    // Every change audited with its id and version, by the token's name; the unchanged apply is not.
    let audited: Vec<String> =
        audit_of(&client, "slo_applied").await.into_iter().rev().map(|e| e.detail).collect();
    assert_eq!(
        audited,
        [
            "checkout/availability v1 created from checkout.yaml",
            "checkout/latency v1 created from checkout.yaml",
            "checkout/availability v2 updated from checkout-v2.yaml",
        ]
    );
    assert!(audit_of(&client, "slo_applied").await.iter().all(|e| e.actor == API_NAME));

    // A restart on the same data directory: the same SLOs, versions and history.
    let before = (list(&client).await, history(&client, "checkout/availability", None).await.unwrap());
    drop(client);
    let restart = controller.restart_config();
    controller.stop(Duration::from_secs(10)).await;
    let controller = RunningController::start(restart).await;
    let client = controller.client().await;
    let after = (list(&client).await, history(&client, "checkout/availability", None).await.unwrap());
    assert_eq!(before, after);
    assert_eq!(
        summary(&after.0)[0],
        ("checkout/availability".into(), 2, 0.995, "30d".into(), "events".into())
    );
    let again = apply(&client, vec![file("checkout-v2.yaml", &v2)]).await.unwrap();
    assert_eq!(again[0], outcome("checkout/availability", 2, "unchanged"));
    controller.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_is_refused_whole_with_file_line_column_and_nothing_is_stored() {
    let dir = TempDir::new("slo-registry-invalid");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2_000))).await;
    let client = controller.client().await;

    // A valid file and a bad one in the same request: neither is stored.
    let bad = "apiVersion: chaos/v1\nkind: SLO\nservice: checkout\nname: errors\nobjective: 120%\n\
               sli:\n  events:\n    bad: http_requests_total{code=~\"5..\"}\n    total: http_requests_total\n";
    let refused = apply(&client, vec![file("checkout.yaml", &checkout()), file("slos/bad.yaml", bad)]).await;
    let status = refused.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("slos/bad.yaml:5:12: "), "{}", status.message());
    assert!(status.message().ends_with("\"120%\" is outside 0%..100%"), "{}", status.message());
    // The same diagnostics as `chaos slo check` gives for the file.
    let local = chaos_controller::slo_file::parse("slos/bad.yaml", bad).unwrap_err().to_string();
    assert_eq!(status.message(), local);

    // An id defined in two files: at its second definition.
    let twice =
        apply(&client, vec![file("a.yaml", &checkout()), file("b.yaml", &checkout())]).await.unwrap_err();
    assert_eq!(twice.code(), Code::InvalidArgument);
    let lines: Vec<&str> = twice.message().lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("b.yaml:4:1: SLO checkout/availability is defined twice (first at a.yaml:4:1)"),
        "{lines:?}"
    );

    // Not SLOs, no file, a file given twice, a bad id.
    let experiment = "apiVersion: chaos/v1\ntitle: not an SLO\nmethod: []\n";
    let status = apply(&client, vec![file("exp.yaml", experiment)]).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("exp.yaml:1:1: this looks like an experiment"),
        "{}",
        status.message()
    );
    let status = apply(&client, vec![]).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "no SLO file given"));
    let status =
        apply(&client, vec![file("a.yaml", &checkout()), file("a.yaml", &checkout())]).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "a.yaml is given twice"));
    let status = history(&client, "no-slash", None).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    assert!(list(&client).await.is_empty());
    assert!(audit_of(&client, "slo_applied").await.is_empty());
    let never = history(&client, "checkout/availability", None).await.unwrap_err();
    assert_eq!((never.code(), never.message()), (Code::NotFound, "SLO checkout/availability not found"));
    controller.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_size_limit_is_refused_saying_so() {
    let dir = TempDir::new("slo-registry-size");
    let mut config = config(dir.path(), fleet(200, 2_000));
    // A message limit above the file limit, so that the registry's own bound is what refuses it.
    config.max_message_bytes = 16 << 20;
    let controller = RunningController::start(config).await;
    let client = controller.client().await;
    let limit = usize::try_from(chaos_controller::slo_file::MAX_FILE_BYTES).unwrap();
    let huge = format!("{}\n# {}\n", checkout(), "x".repeat(limit));
    let status = apply(&client, vec![file("huge.yaml", &huge)]).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        format!("huge.yaml: file is {} bytes, larger than the {limit} an SLO file may be", huge.len())
    );
    assert!(list(&client).await.is_empty());
    controller.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_slo_leaves_the_list_stays_in_the_history_and_is_audited() {
    let dir = TempDir::new("slo-registry-delete");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2_000))).await;
    let client = controller.client().await;
    apply(&client, vec![file("checkout.yaml", &checkout())]).await.unwrap();

    let deleted = client
        .clone()
        .delete_slo(DeleteSloRequest { id: "checkout/latency".into() })
        .await
        .unwrap()
        .into_inner()
        .deleted
        .unwrap();
    assert_eq!((deleted.id.as_str(), deleted.version, deleted.deleted), ("checkout/latency", 2, true));
    assert_eq!(deleted.applied_by, API_NAME);
    let ids: Vec<String> = list(&client).await.into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["checkout/availability"]);
    let versions = history(&client, "checkout/latency", None).await.unwrap();
    let seen: Vec<_> = versions.iter().map(|v| (v.version, v.deleted, v.sli_kind.as_str())).collect();
    assert_eq!(seen, [(1, false, "latency"), (2, true, "")]);
    let audited: Vec<String> = audit_of(&client, "slo_deleted").await.into_iter().map(|e| e.detail).collect();
    assert_eq!(audited, ["checkout/latency v2 deleted"]);

    // Deleting it again, or an SLO never applied: NOT_FOUND, nothing added.
    for id in ["checkout/latency", "checkout/nothing"] {
        let status = client.clone().delete_slo(DeleteSloRequest { id: id.into() }).await.unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::NotFound, format!("SLO {id} not found").as_str())
        );
    }
    assert_eq!(history(&client, "checkout/latency", None).await.unwrap().len(), 2);
    assert_eq!(audit_of(&client, "slo_deleted").await.len(), 1);

    // Applied again: created as version 3.
    let again = apply(&client, vec![file("checkout.yaml", &checkout())]).await.unwrap();
    assert_eq!(
        again,
        [outcome("checkout/availability", 1, "unchanged"), outcome("checkout/latency", 3, "created")]
    );
    controller.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_registry_call_needs_a_valid_token_and_a_refused_one_changes_nothing() {
    let dir = TempDir::new("slo-registry-auth");
    let controller = RunningController::start(config(dir.path(), fleet(200, 2_000))).await;
    for token in [None, Some("not-a-token-of-this-controller")] {
        let mut stranger = fleet_support::client(controller.addr, token).await;
        let refused = [
            stranger
                .apply_slos(ApplySlosRequest { files: vec![file("checkout.yaml", &checkout())] })
                .await
                .map(drop),
            stranger.list_slos(ListSlosRequest::default()).await.map(drop),
            stranger
                .slo_history(SloHistoryRequest { id: "checkout/latency".into(), version: None })
                .await
                .map(drop),
            stranger.delete_slo(DeleteSloRequest { id: "checkout/latency".into() }).await.map(drop),
        ];
        for status in refused {
            let status = status.unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "{token:?}: {status:?}");
        }
    }
    let client = controller.client().await;
    assert!(list(&client).await.is_empty());
    assert!(audit_of(&client, "slo_applied").await.is_empty());
    controller.stop(Duration::from_secs(10)).await;
}
