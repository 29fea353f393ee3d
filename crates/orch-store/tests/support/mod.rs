//! Shared setup for store tests: a fresh database per test on each backend (an SQLite file in a
//! temporary directory, or a new PostgreSQL database on `ORCH_TEST_POSTGRES_URL`, dropped when
//! the test ends, also on panic), and small task builders.

#![allow(dead_code)]

use std::time::Duration;

use orch_core::{NewTask, Outcome, RetryPolicy, Status, TaskId, TaskSpec, TaskTitle, Timestamp};
use orch_store::{DatabaseConfig, Op, SqliteOptions, Store, Submission};

/// The backends every store test runs on (see [`store_tests`]); a test that is specific to one
/// backend says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the PostgreSQL server at `ORCH_TEST_POSTGRES_URL`.
    Postgres,
}

impl Backend {
    /// Every backend, for tests that loop rather than use [`store_tests`].
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
}

/// Run each listed test body, `async fn name(db: TestDb)`, on every backend, each on a fresh
/// database: the tests are `sqlite::name` and `postgres::name`.
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
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) =
                        super::support::TestDb::try_on(super::support::Backend::Postgres).await
                    else {
                        return;
                    };
                    super::$name(db).await
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use store_tests;

/// The PostgreSQL server tests use, or `None` (with the reason printed) when it is not
/// configured; in CI a missing server fails the test instead.
pub fn postgres_url() -> Option<String> {
    orch_testdb::server_url("this store test")
}

/// A database created for one test, dropped (`WITH (FORCE)`) when this guard is, also when
/// the test panics.
pub use orch_testdb::ScratchDatabase as PgDatabase;

/// A fresh database on the server at `admin_url`.
pub fn pg_database(admin_url: &str) -> PgDatabase {
    PgDatabase::create(admin_url, "orch_test")
}

pub struct TestDb {
    pub store: Store,
    pub dir: tempfile::TempDir,
    pub project: orch_core::ProjectId,
    /// The PostgreSQL database, on that backend (dropped after the store).
    pub pg: Option<PgDatabase>,
    pub backend: Backend,
}

impl TestDb {
    /// A fresh SQLite database (for the tests that are SQLite's own).
    pub async fn new() -> TestDb {
        TestDb::on(Backend::Sqlite).await
    }

    /// A fresh database on `backend`; panics when PostgreSQL is not configured (use
    /// [`TestDb::try_on`] to skip instead).
    pub async fn on(backend: Backend) -> TestDb {
        TestDb::try_on(backend)
            .await
            .expect("ORCH_TEST_POSTGRES_URL is set")
    }

    /// A fresh database on `backend`, or `None` when it is PostgreSQL and no server is
    /// configured (outside CI).
    pub async fn try_on(backend: Backend) -> Option<TestDb> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (config, pg) = match backend {
            Backend::Sqlite => (
                DatabaseConfig::Sqlite {
                    path: dir.path().join("orch.db"),
                    options: SqliteOptions::default(),
                },
                None,
            ),
            Backend::Postgres => {
                let database = pg_database(&postgres_url()?);
                (
                    DatabaseConfig::Postgres {
                        url: database.url.clone(),
                    },
                    Some(database),
                )
            }
        };
        let store = Store::open(&config).await.expect("open store");
        let project = store
            .ensure_project(&dir.path().to_string_lossy(), Timestamp(0))
            .await
            .expect("project")
            .id;
        Some(TestDb {
            store,
            dir,
            project,
            pg,
            backend,
        })
    }

    /// How to open this database again (as a second process would).
    pub fn config(&self) -> DatabaseConfig {
        match &self.pg {
            Some(database) => DatabaseConfig::Postgres {
                url: database.url.clone(),
            },
            None => DatabaseConfig::Sqlite {
                path: self.path(),
                options: SqliteOptions::default(),
            },
        }
    }

    /// Another handle on the same database (as a second process would open it).
    pub async fn reopen(&self) -> Store {
        Store::open(&self.config()).await.expect("reopen store")
    }

    /// The SQLite file (on that backend).
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("orch.db")
    }

    /// Run one SQL statement on the database directly, outside orch (as anyone holding the
    /// SQLite file or the server's credentials could): the rows changed, or the database's
    /// refusal in words.
    pub async fn raw_execute(&self, sql: &str) -> Result<u64, String> {
        match &self.pg {
            Some(database) => database
                .connect()
                .await
                .execute(sql, &[])
                .await
                .map_err(|e| match e.as_db_error() {
                    Some(db) => db.message().to_owned(),
                    None => e.to_string(),
                }),
            None => rusqlite::Connection::open(self.path())
                .and_then(|conn| conn.execute(sql, []))
                .map(|n| n as u64)
                .map_err(|e| e.to_string()),
        }
    }

    /// Every text and binary value in every table, binary as hex, each with its table: what
    /// someone reading the database directly would see.
    pub async fn raw_cells(&self) -> Vec<(String, String)> {
        let mut cells = Vec::new();
        match &self.pg {
            Some(database) => {
                let client = database.connect().await;
                let columns = client
                    .query(
                        "SELECT table_name::TEXT, column_name::TEXT, data_type::TEXT \
                         FROM information_schema.columns \
                         WHERE table_schema = 'public' AND data_type IN ('text', 'bytea')",
                        &[],
                    )
                    .await
                    .expect("list columns");
                for column in columns {
                    let (table, name, kind): (String, String, String) =
                        (column.get(0), column.get(1), column.get(2));
                    let select = if kind == "bytea" {
                        format!("SELECT encode(\"{name}\", 'hex') FROM \"{table}\"")
                    } else {
                        format!("SELECT \"{name}\" FROM \"{table}\"")
                    };
                    for row in client.query(&select, &[]).await.expect("read column") {
                        if let Some(text) = row.get::<_, Option<String>>(0) {
                            cells.push((table.clone(), text));
                        }
                    }
                }
            }
            None => {
                let conn = rusqlite::Connection::open(self.path()).expect("open the file");
                let tables: Vec<String> = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .expect("list tables")
                    .query_map([], |r| r.get(0))
                    .expect("list tables")
                    .collect::<Result<_, _>>()
                    .expect("list tables");
                for table in tables {
                    let mut stmt = conn
                        .prepare(&format!("SELECT * FROM \"{table}\""))
                        .expect("read table");
                    let columns = stmt.column_count();
                    let mut rows = stmt.query([]).expect("read table");
                    while let Some(row) = rows.next().expect("read row") {
                        for i in 0..columns {
                            let text = match row.get_ref(i).expect("read cell") {
                                rusqlite::types::ValueRef::Text(t) => {
                                    String::from_utf8_lossy(t).into_owned()
                                }
                                rusqlite::types::ValueRef::Blob(b) => {
                                    b.iter().map(|b| format!("{b:02x}")).collect()
                                }
                                _ => continue,
                            };
                            cells.push((table.clone(), text));
                        }
                    }
                }
            }
        }
        cells
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

/// Complete `claim` as succeeded, by its holder `actor` at `now`; the task's status after.
pub async fn succeed(store: &Store, claim: &orch_store::Claim, actor: &str, now: i64) -> Status {
    store
        .complete(
            claim.run.id,
            claim.token,
            Outcome::Succeeded,
            None,
            op(actor, now),
        )
        .await
        .expect("complete")
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
            unique_key: None,
            tools: Vec::new(),
            budget: None,
        },
        needs_in_batch: needs.to_vec(),
        needs_existing: Vec::new(),
        parent: None,
        parent_in_batch: None,
    }
}

pub const LEASE: Duration = Duration::from_secs(10);
