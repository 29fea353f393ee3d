//! `result.json` validation against the generated schema: a real `RunResult` passes, and a wrong
//! type or an unknown field is refused with the field named.

use orch_worker::bundle::{validate_result, ResultStatus, RunResult, Usage};
use serde_json::json;

fn step_result() -> RunResult {
    RunResult {
        kind: "step".to_string(),
        task: 12,
        attempt: 1,
        step: Some("test".to_string()),
        status: ResultStatus::NeedsReview,
        summary: "Tests pass; one flaky test retried.".to_string(),
        started_at: "2025-01-02T03:04:05Z".to_string(),
        ended_at: "2025-01-02T03:05:05Z".to_string(),
        duration_ms: 60_000,
        exit_code: Some(0),
        changed_files: vec!["src/lib.rs".to_string()],
        commit: None,
        usage: Some(Usage {
            input_tokens: 10,
            output_tokens: 20,
            cost_usd: 0.01,
        }),
        session_id: None,
        error: None,
        failure_class: None,
        review: None,
    }
}

fn result_json() -> serde_json::Value {
    serde_json::to_value(step_result()).expect("a RunResult serializes")
}

/// Apply `edit` to a valid result and return the validation error.
fn error_after(edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> String {
    let mut value = result_json();
    edit(value.as_object_mut().expect("a result is an object"));
    validate_result(&value).expect_err("the edited result should be refused")
}

#[test]
fn a_serialized_run_result_passes_validation() {
    assert_eq!(validate_result(&result_json()), Ok(()));
    let mut run = step_result();
    run.kind = "run".to_string();
    run.step = None;
    run.usage = None;
    run.exit_code = None;
    let run = serde_json::to_value(run).expect("serialize");
    assert_eq!(validate_result(&run), Ok(()));
}

#[test]
fn a_field_of_the_wrong_type_is_refused_with_its_path_named() {
    let error = error_after(|result| {
        result.insert("task".to_string(), json!("twelve"));
    });
    assert!(error.contains("at /task:"), "{error}");
    assert!(error.contains("integer"), "{error}");

    let error = error_after(|result| {
        result.insert(
            "usage".to_string(),
            json!({"input_tokens": -1, "output_tokens": 0, "cost_usd": 0}),
        );
    });
    assert!(error.contains("at /usage/input_tokens:"), "{error}");
}

#[test]
fn an_unknown_field_is_refused_with_its_name() {
    let error = error_after(|result| {
        result.insert("surprise".to_string(), json!(true));
    });
    assert!(error.contains("surprise"), "{error}");
}

#[test]
fn an_unknown_status_is_refused() {
    let error = error_after(|result| {
        result.insert("status".to_string(), json!("exploded"));
    });
    assert!(error.contains("at /status:"), "{error}");
}

#[test]
fn a_missing_required_field_is_refused_with_its_name() {
    let error = error_after(|result| {
        result.remove("summary");
    });
    assert!(error.contains("summary"), "{error}");
}
