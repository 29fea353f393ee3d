//! The application layer on a real SQLite file.

use orch_core::{RetryPolicy, TaskDraft, TaskSpec};
use orch_store::{DatabaseConfig, SqliteOptions};

use super::*;

async fn app(dir: &Path) -> App {
    let store = Store::open(&DatabaseConfig::Sqlite {
        path: dir.join("orch.db"),
        options: SqliteOptions::default(),
    })
    .await
    .unwrap();
    App::new(store)
}

fn task(title: &str) -> NewTask {
    let spec = TaskSpec::parse(TaskDraft {
        title: title.into(),
        retry: RetryPolicy::default(),
        ..TaskDraft::default()
    })
    .unwrap();
    NewTask {
        spec,
        needs_in_batch: Vec::new(),
        needs_existing: Vec::new(),
        parent: None,
    }
}

#[tokio::test]
async fn a_project_must_be_an_existing_absolute_directory() {
    let dir = tempfile::tempdir().unwrap();
    assert!(ProjectDir::resolve("relative/dir", "project").is_err());
    let missing = dir.path().join("missing");
    let err = ProjectDir::resolve(&missing.to_string_lossy(), "project").unwrap_err();
    assert_eq!(err.field, "project");
    assert!(ProjectDir::resolve(&dir.path().to_string_lossy(), "project").is_ok());
}

#[tokio::test]
async fn a_replayed_delivery_answers_with_the_first_task_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let project = ProjectDir::resolve(&dir.path().to_string_lossy(), "project").unwrap();
    let deliveries = [Delivery::new("tasks", "d-1")];
    let first = app
        .submit_once(&project, &deliveries, task("first"), "test")
        .await
        .unwrap();
    let again = app
        .submit_once(&project, &deliveries, task("second"), "test")
        .await
        .unwrap();
    assert!(first.created);
    assert!(!again.created);
    assert_eq!(again.tasks[0].id, first.tasks[0].id);
    assert_eq!(
        app.store().tasks(&Default::default()).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn a_workflow_error_names_the_yaml_field_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let project = ProjectDir::resolve(&dir.path().to_string_lossy(), "project").unwrap();
    let err = app
        .submit_workflow(
            &project,
            WorkflowText {
                file: "wf.yml",
                text: "tasks:\n  - id: a\n    title: ''\n",
            },
            "test",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Workflow(_)), "{err}");
    assert!(err.to_string().starts_with("wf.yml:3:"), "{err}");
    assert!(err.is_refusal());
}

#[tokio::test]
async fn cancel_then_retry_then_cancel_again_goes_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let project = ProjectDir::resolve(&dir.path().to_string_lossy(), "project").unwrap();
    let id = app
        .submit(&project, vec![task("t")], "test")
        .await
        .unwrap()
        .tasks[0]
        .id;
    let reason = CancelReason::parse(Some("not now".into())).unwrap();
    assert_eq!(
        app.cancel(id, reason.as_ref(), "test").await.unwrap(),
        Status::Cancelled
    );
    assert_eq!(app.retry(id, None, "test").await.unwrap(), Status::Queued);
    let refused = app.approve(id, "test").await.unwrap_err();
    assert!(
        matches!(refused, AppError::Store(StoreError::Conflict { .. })),
        "{refused}"
    );
}
