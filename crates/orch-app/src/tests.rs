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
        parent_in_batch: None,
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

#[tokio::test]
async fn an_issue_becomes_one_task_and_a_copied_marker_links_nothing_but_a_published_task() {
    use crate::forge::IssueRef;
    use orch_core::forge::RepoSlug;
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let project = ProjectDir::resolve(&dir.path().to_string_lossy(), "project").unwrap();
    let repo = RepoSlug::parse("octo/widgets").unwrap();
    app.link_repo(&project, &repo, "test").await.unwrap();
    let issue = |number: u64, body: &str| IssueRef {
        repo: repo.clone(),
        number,
        body: body.to_owned(),
    };
    // By webhook, then by the poller (no delivery id of its own): one task, linked.
    let first = app
        .submit_issue(
            &project,
            &issue(5, "x"),
            &[Delivery::new("github", "d-1")],
            task("Five"),
            "webhook",
        )
        .await
        .unwrap();
    let polled = app
        .submit_issue(&project, &issue(5, "x"), &[], task("Five"), "poller")
        .await
        .unwrap();
    assert!(first.created && !polled.created);
    assert_eq!(polled.tasks[0].id, first.tasks[0].id);
    let five = first.tasks[0].id;
    assert_eq!(app.forge_link(five).await.unwrap().unwrap().issue, Some(5));

    // A local task, not published: a stranger's issue carrying its marker becomes a task of its
    // own and the local task stays unlinked.
    let local = app
        .submit(&project, vec![task("Local")], "test")
        .await
        .unwrap()
        .tasks[0]
        .id;
    let marker = orch_core::forge::marker(local);
    let stranger = app
        .submit_issue(
            &project,
            &issue(6, &format!("hi\n{marker}")),
            &[],
            task("Six"),
            "webhook",
        )
        .await
        .unwrap();
    assert!(stranger.created);
    assert_ne!(stranger.tasks[0].id, local);
    assert_eq!(app.forge_link(local).await.unwrap(), None);

    // Published: the issue orch opens (its body holds the marker) is linked to it, not a task.
    let published = app.publish(local, "orch", "test").await.unwrap();
    assert!(published.enqueued);
    let opened = app
        .submit_issue(
            &project,
            &issue(7, &format!("Local\n\n{marker}")),
            &[],
            task("Local"),
            "webhook",
        )
        .await
        .unwrap();
    assert!(!opened.created);
    assert_eq!(opened.tasks[0].id, local);
    assert_eq!(app.forge_link(local).await.unwrap().unwrap().issue, Some(7));
    // Published tasks with an issue are not published again.
    assert!(app.publish(local, "orch", "test").await.is_err());
    assert!(app.publish(five, "orch", "test").await.is_err());
}
