//! Shared setup for store tests: a fresh SQLite file per test and small task builders.

#![allow(dead_code)]

use std::time::Duration;

use orch_core::{NewTask, RetryPolicy, TaskId, TaskSpec, TaskTitle, Timestamp};
use orch_store::{Op, SqliteOptions, Store, Submission};

/// The backends every store test runs on (see [`store_tests`]). PostgreSQL joins when its
/// backend is built; a test that is specific to one backend says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file in a temporary directory.
    Sqlite,
}

impl Backend {
    /// Every backend, for tests that loop rather than use [`store_tests`].
    pub const ALL: [Backend; 1] = [Backend::Sqlite];
}

/// Run each listed test body, `async fn name(db: TestDb)`, on every backend, each on a fresh
/// database: the tests are `sqlite::name` (and `postgres::name` once that backend exists).
#[allow(unused_macros)]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::support::TestDb::on(super::support::Backend::Sqlite).await)
                        .await
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use store_tests;

pub struct TestDb {
    pub store: Store,
    pub dir: tempfile::TempDir,
    pub project: orch_core::ProjectId,
}

impl TestDb {
    /// A fresh SQLite database (for the tests that are SQLite's own).
    pub async fn new() -> TestDb {
        TestDb::on(Backend::Sqlite).await
    }

    /// A fresh database on `backend`.
    pub async fn on(backend: Backend) -> TestDb {
        let Backend::Sqlite = backend;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_sqlite(&dir.path().join("orch.db"), SqliteOptions::default())
            .await
            .expect("open store");
        let project = store
            .ensure_project(&dir.path().to_string_lossy(), Timestamp(0))
            .await
            .expect("project")
            .id;
        TestDb {
            store,
            dir,
            project,
        }
    }

    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("orch.db")
    }

    /// Submit tasks given as (key, needs-as-batch-indices) with a no-backoff retry policy.
    pub async fn submit(&self, tasks: Vec<NewTask>, now: i64) -> Vec<TaskId> {
        self.store
            .submit(
                &Submission {
                    project: self.project,
                    workflow: None,
                    tasks,
                },
                op("test", now),
            )
            .await
            .expect("submit")
    }
}

pub fn op(actor: &str, now: i64) -> Op<'_> {
    Op {
        actor,
        now: Timestamp(now),
        jitter_unit: 0.0,
    }
}

pub fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
        jitter: Duration::ZERO,
    }
}

pub fn task(key: &str, needs: &[usize]) -> NewTask {
    task_with(key, needs, 0, policy(3))
}

pub fn task_with(key: &str, needs: &[usize], priority: i32, retry: RetryPolicy) -> NewTask {
    NewTask {
        spec: TaskSpec {
            key: Some(key.to_owned()),
            title: TaskTitle::parse(format!("task {key}")).expect("title"),
            body: String::new(),
            labels: Vec::new(),
            priority,
            steps: Vec::new(),
            retry,
            timeout: None,
            requires_approval: false,
            merge: None,
            start_from: orch_core::StartFrom::default(),
        },
        needs_in_batch: needs.to_vec(),
        needs_existing: Vec::new(),
        parent: None,
    }
}

pub const LEASE: Duration = Duration::from_secs(10);
