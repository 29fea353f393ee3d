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

/// A writer that takes `delay` over every send, counting the sends.
struct SlowForge {
    delay: Duration,
    sent: std::sync::atomic::AtomicU32,
}

impl ForgeWriter for SlowForge {
    async fn send(
        &self,
        _repo: &RepoSlug,
        _settings: &ForgeSettings,
        _op: &ForgeOp,
    ) -> Result<ForgeResult, SendError> {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        Ok(ForgeResult::Nothing)
    }
}

#[tokio::test]
async fn a_send_slower_than_its_lease_keeps_the_op_from_another_dispatcher() {
    let home = tempfile::tempdir().unwrap();
    let (store, _task, project) = store_with_task(home.path()).await;
    let repo = RepoSlug::parse("octo/widgets").unwrap();
    store
        .link_project_forge(project, ForgeKind::Github, &repo, orch_store::wall_clock())
        .await
        .unwrap();
    let ops: Vec<NewForgeOp> = (1..=2)
        .map(|issue| NewForgeOp {
            project,
            task: None,
            event: None,
            op: orch_core::forge::KeyedOp {
                key: format!("close-{issue}"),
                op: ForgeOp::CloseIssue { issue },
            },
        })
        .collect();
    store
        .enqueue_forge_ops(&ops, orch_store::wall_clock())
        .await
        .unwrap();
    // Each send (as a rate-limited client waiting for its reset) outlasts the 1 s lease; the
    // pass renews it every 200 ms, so the other dispatcher, looking all along, finds nothing.
    let lease = Duration::from_secs(1);
    let writer = SlowForge {
        delay: Duration::from_millis(1_500),
        sent: Default::default(),
    };
    let pass = orch_server::forge_outbox::dispatch_due_leased(
        &store,
        home.path(),
        &writer,
        "d1",
        lease,
        Duration::from_millis(200),
    );
    let other = async {
        let mut taken = 0;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            taken += store
                .claim_forge_ops("d2", lease, 20, orch_store::wall_clock())
                .await
                .unwrap()
                .len();
        }
        taken
    };
    let (report, taken) = tokio::join!(pass, other);
    assert_eq!(report.unwrap().done, 2);
    assert_eq!(taken, 0, "another dispatcher took an op still being sent");
    assert_eq!(writer.sent.load(std::sync::atomic::Ordering::SeqCst), 2);
    let states: Vec<OutboxState> = store
        .forge_ops(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.state)
        .collect();
    assert_eq!(states, [OutboxState::Done, OutboxState::Done]);

    // A dispatcher that stops renewing (it died) gives its ops up within the lease.
    store
        .enqueue_forge_ops(
            &[NewForgeOp {
                project,
                task: None,
                event: None,
                op: orch_core::forge::KeyedOp {
                    key: "close-3".into(),
                    op: ForgeOp::CloseIssue { issue: 3 },
                },
            }],
            orch_store::wall_clock(),
        )
        .await
        .unwrap();
    let held = store
        .claim_forge_ops("dead", lease, 20, orch_store::wall_clock())
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let report = orch_server::forge_outbox::dispatch_due_leased(
        &store,
        home.path(),
        &writer,
        "d2",
        lease,
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    assert_eq!(report.done, 1);
}
