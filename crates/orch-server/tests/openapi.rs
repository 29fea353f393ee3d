//! The OpenAPI document is generated from the handlers and the `orch-api` types, and checked in
//! as `schemas/openapi.json` at the repository root, so a change of the API's shape shows in
//! review. Refresh it with `UPDATE_SCHEMAS=1 cargo test -p orch-server --test openapi`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use orch_server::api::openapi::ApiDoc;
use serde_json::Value;
use utoipa::OpenApi;

fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap()
}

fn snapshot_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/openapi.json")
}

#[test]
fn the_checked_in_openapi_document_matches_the_generated_one() {
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&ApiDoc::openapi()).unwrap()
    );
    let path = snapshot_path();
    if std::env::var("UPDATE_SCHEMAS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write schemas/openapi.json");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is out of date with the API (its handlers and the orch-api types); run \
         `UPDATE_SCHEMAS=1 cargo test -p orch-server --test openapi` and commit the result",
        path.display()
    );
}

/// The property names of the component schema `name`.
fn properties(document: &Value, name: &str) -> BTreeSet<String> {
    let schema = &document["components"]["schemas"][name];
    assert!(schema.is_object(), "no component schema `{name}`");
    schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("`{name}` has no properties"))
        .keys()
        .cloned()
        .collect()
}

/// The keys `value` serializes to (as the daemon sends it, `null`s included).
fn keys<T: serde::Serialize>(value: &T) -> BTreeSet<String> {
    serde_json::to_value(value)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// The document's schemas are those of the types the daemon serializes: the field names a
/// client reads (the CLI, the dashboard's script, a remote worker) are the ones documented.
#[test]
fn the_documented_schemas_have_the_fields_the_orch_api_types_serialize() {
    let document = document();
    let task = orch_api::TaskView {
        id: 1,
        key: None,
        title: "t".to_owned(),
        status: "queued".to_owned(),
        status_reason: None,
        priority: 0,
        labels: Vec::new(),
        project: 1,
        workflow: None,
        parent: None,
        needs: Vec::new(),
        attempts_used: 0,
        max_attempts: 3,
        run_count: 0,
        current_run: None,
        not_before: None,
        created_at: "2026-01-01T00:00:00.000Z".to_owned(),
        updated_at: "2026-01-01T00:00:00.000Z".to_owned(),
        // Skipped when absent: set here so the key is compared too.
        budget: Some(orch_core::TaskBudget::default()),
    };
    assert_eq!(properties(&document, "TaskView"), keys(&task));
    let run = orch_api::RunView {
        id: 1,
        attempt: 1,
        owner: "w".to_owned(),
        state: "active".to_owned(),
        lease_expires_at: String::new(),
        started_at: String::new(),
        ended_at: None,
        outcome: None,
    };
    assert_eq!(properties(&document, "RunView"), keys(&run));
    let event = orch_api::EventView {
        id: 1,
        at: String::new(),
        actor: "cli".to_owned(),
        kind: "submit".to_owned(),
        from: None,
        to: "queued".to_owned(),
        run: None,
        reason: None,
        data: Value::Null,
    };
    assert_eq!(properties(&document, "EventView"), keys(&event));
    let change = orch_api::StatusChange {
        id: 1,
        status: "cancelled".to_owned(),
    };
    assert_eq!(properties(&document, "StatusChange"), keys(&change));
    let heartbeat = orch_api::HeartbeatRequest { lease_ms: 1000 };
    assert_eq!(properties(&document, "HeartbeatRequest"), keys(&heartbeat));
    // A claim with everything optional present, so every documented field is serialized.
    let claim = orch_api::ClaimedRun {
        task: orch_api::ClaimedTask {
            id: 1,
            project: 1,
            workflow: None,
            parent: None,
            spec: Value::Null,
            status: "running".to_owned(),
            attempts_used: 1,
            run_count: 1,
            needs: Vec::new(),
            created_at: 0,
            updated_at: 0,
        },
        run: 1,
        attempt: 1,
        token: "0".repeat(32),
        owner: "w".to_owned(),
        lease_expires_at: 0,
        started_at: 0,
        project_dir: "/p".to_owned(),
        project_name: "p".to_owned(),
        reply: Some(orch_api::ClaimedReply {
            id: 1,
            message: "m".to_owned(),
            agent: "sim".to_owned(),
            step: "s".to_owned(),
            session_id: "x".to_owned(),
        }),
        reviews: vec![orch_api::ReviewView {
            round: 1,
            verdict: "approve".to_owned(),
            reasons: Vec::new(),
            escalated: false,
        }],
        dependencies: vec![orch_api::ClaimedDependency {
            id: 2,
            project: 1,
            created_at: 0,
            status: "done".to_owned(),
        }],
    };
    assert_eq!(properties(&document, "ClaimedRun"), keys(&claim));
    assert_eq!(properties(&document, "ClaimedTask"), keys(&claim.task));
    // What a worker sends and the daemon reads survive the trip through the shared types.
    let text = serde_json::to_string(&claim).unwrap();
    let back: orch_api::ClaimedRun = serde_json::from_str(&text).unwrap();
    assert_eq!(back, claim);
}
