//! The outbox dispatcher on a real SQLite store: a writer's answers (done with a result, retry
//! after a reset, refused) become the ops' states, a published task is linked to the issue the
//! forge opened, and nothing is sent for a project that is not linked. The writer stands in for
//! GitHub (whose client is the next part); the store and the outbox are the real ones.

#![allow(clippy::unwrap_used)]

use std::sync::Mutex;
use std::time::Duration;

use orch_core::forge::{publish_op, ForgeKind, ForgeOp, ForgeResult, ForgeSettings, RepoSlug};
use orch_core::{NewTask, TaskDraft, TaskSpec};
use orch_server::forge_outbox::{dispatch_due, DispatchReport, ForgeWriter, SendError};
use orch_store::{NewForgeOp, OutboxState, SqliteOptions, Store, Submission};

/// Answers from a script, recording what it was asked.
struct ScriptedForge {
    answers: Mutex<Vec<Result<ForgeResult, SendError>>>,
    sent: Mutex<Vec<(String, &'static str)>>,
}

impl ForgeWriter for ScriptedForge {
    async fn send(
        &self,
        repo: &RepoSlug,
        _settings: &ForgeSettings,
        op: &ForgeOp,
    ) -> Result<ForgeResult, SendError> {
        self.sent
            .lock()
            .unwrap()
            .push((repo.to_string(), op.name()));
        self.answers.lock().unwrap().remove(0)
    }
}

async fn store_with_task(
    dir: &std::path::Path,
) -> (Store, orch_core::TaskId, orch_core::ProjectId) {
    let store = Store::open_sqlite(&dir.join("orch.db"), SqliteOptions::default())
        .await
        .unwrap();
    let project_dir = dir.join("project");
    std::fs::create_dir_all(&project_dir).unwrap();
    let project = store
        .ensure_project(project_dir.to_str().unwrap(), orch_store::wall_clock())
        .await
        .unwrap();
    let spec = TaskSpec::parse(TaskDraft {
        title: "Publish me".into(),
        body: "A local task.".into(),
        ..TaskDraft::default()
    })
    .unwrap();
    let ids = store
        .submit(
            &Submission {
                project: project.id,
                workflow: None,
                tasks: vec![NewTask {
                    spec,
                    needs_in_batch: Vec::new(),
                    needs_existing: Vec::new(),
                    parent: None,
                    parent_in_batch: None,
                }],
            },
            orch_store::Op::now("test"),
        )
        .await
        .unwrap();
    (store, ids[0], project.id)
}

#[tokio::test]
async fn the_writers_answers_become_the_ops_states_and_a_published_task_gets_its_issue() {
    let home = tempfile::tempdir().unwrap();
    let (store, task, project) = store_with_task(home.path()).await;
    let repo = RepoSlug::parse("octo/widgets").unwrap();
    let enqueue = |key: &str| NewForgeOp {
        project,
        task: None,
        event: None,
        op: orch_core::forge::KeyedOp {
            key: key.to_owned(),
            op: ForgeOp::CloseIssue { issue: 3 },
        },
    };
    let publish = NewForgeOp {
        project,
        task: Some(task),
        event: None,
        op: publish_op(task, "Publish me", "A local task.", "orch"),
    };
    // Not linked yet: an op is refused for good, and the writer is never asked.
    store
        .enqueue_forge_ops(&[enqueue("close-1")], orch_store::wall_clock())
        .await
        .unwrap();
    let writer = ScriptedForge {
        answers: Mutex::new(Vec::new()),
        sent: Mutex::new(Vec::new()),
    };
    let report = dispatch_due(&store, home.path(), &writer, "d")
        .await
        .unwrap();
    assert_eq!(
        report,
        DispatchReport {
            done: 0,
            retried: 0,
            failed: 1
        }
    );
    assert!(writer.sent.lock().unwrap().is_empty());
    let refused = &store.forge_ops(None).await.unwrap()[0];
    assert_eq!(refused.state, OutboxState::Failed);
    assert!(
        refused
            .last_error
            .as_deref()
            .unwrap()
            .contains("not linked"),
        "{refused:?}"
    );

    store
        .link_project_forge(project, ForgeKind::Github, &repo, orch_store::wall_clock())
        .await
        .unwrap();
    store
        .enqueue_forge_ops(&[publish, enqueue("close-2")], orch_store::wall_clock())
        .await
        .unwrap();
    *writer.answers.lock().unwrap() = vec![
        Ok(ForgeResult::Issue {
            number: 41,
            url: Some("https://github.com/octo/widgets/issues/41".into()),
        }),
        Err(SendError::Retry {
            message: "secondary rate limit".into(),
            after: Some(Duration::from_secs(60)),
        }),
    ];
    let report = dispatch_due(&store, home.path(), &writer, "d")
        .await
        .unwrap();
    assert_eq!((report.done, report.retried, report.failed), (1, 1, 0));
    assert_eq!(
        *writer.sent.lock().unwrap(),
        [
            ("octo/widgets".to_owned(), "create_issue"),
            ("octo/widgets".to_owned(), "close_issue")
        ]
    );
    let link = store.forge_link(task).await.unwrap().unwrap();
    assert_eq!(link.issue, Some(41));
    let ops = store.forge_ops(None).await.unwrap();
    let retried = ops.iter().find(|e| e.key == "close-2").unwrap();
    assert_eq!(retried.state, OutboxState::Pending);
    assert_eq!(retried.attempts, 1);
    // The forge's reset (60 s) is honoured over the first backoff (5 s).
    let wait = retried.next_attempt_at.0 - orch_store::wall_clock().0;
    assert!((55_000..=60_000).contains(&wait), "{wait}");
    // The published issue calls for the task's labels and marker comment (end to end:
    // `tests/github/publish.rs`), due now, sent over the next passes; the retried close
    // waits for its reset.
    *writer.answers.lock().unwrap() = vec![Ok(ForgeResult::Nothing), Ok(ForgeResult::Nothing)];
    for _ in 0..2 {
        let report = dispatch_due(&store, home.path(), &writer, "d")
            .await
            .unwrap();
        assert_eq!((report.retried, report.failed), (0, 0));
    }
    let mut followed: Vec<&str> = writer.sent.lock().unwrap()[2..]
        .iter()
        .map(|(_, name)| *name)
        .collect();
    followed.sort_unstable();
    assert_eq!(followed, ["set_labels", "upsert_marker_comment"]);
    // Nothing is due now: the writer is not asked again.
    let report = dispatch_due(&store, home.path(), &writer, "d")
        .await
        .unwrap();
    assert_eq!(report, DispatchReport::default());
    assert_eq!(writer.sent.lock().unwrap().len(), 4);
}
