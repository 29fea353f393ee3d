//! Export and import of a whole home (`orch_store::archive`): a source SQLite home with a row in
//! every table, exported, imported into an empty target database, exported again. The target
//! backend is chosen per test module (`archive_tests!`), so the PostgreSQL backend joins by adding
//! its line there.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_core::{Outcome, ProjectId, Timestamp};
use orch_store::archive::{self, Table};
use orch_store::{
    DatabaseConfig, Delivery, ReviewRecord, ReviewVerdict, SqliteOptions, Store, StoreError,
    Submission, TaskFilter, UsageRecord,
};
use support::{op, policy, task, task_with, Backend, TestDb, LEASE};

/// An empty target database on a backend, in its own home directory.
struct Target {
    store: Store,
    home: tempfile::TempDir,
    /// The PostgreSQL database, on that backend (dropped after the store).
    _pg: Option<support::PgDatabase>,
}

impl Target {
    /// `None` when the backend is PostgreSQL and no server is configured (outside CI).
    async fn on(backend: Backend) -> Option<Target> {
        let home = tempfile::tempdir().unwrap();
        let (config, pg) = match backend {
            Backend::Sqlite => (
                DatabaseConfig::Sqlite {
                    path: home.path().join("orch.db"),
                    options: SqliteOptions::default(),
                },
                None,
            ),
            Backend::Postgres => {
                let database = support::pg_database(&support::postgres_url()?);
                (
                    DatabaseConfig::Postgres {
                        url: database.url.clone(),
                    },
                    Some(database),
                )
            }
        };
        let store = Store::open(&config).await.unwrap();
        Some(Target {
            store,
            home,
            _pg: pg,
        })
    }
}

/// Run each test body, `async fn name(target: Target)`, with an empty target on every backend
/// (the source is always an SQLite home).
macro_rules! archive_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let target = super::Target::on(super::support::Backend::Sqlite).await;
                    super::$name(target.expect("SQLite is always there")).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(target) =
                        super::Target::on(super::support::Backend::Postgres).await
                    {
                        super::$name(target).await
                    }
                }
            )*
        }
    };
}

/// A source home with rows in every table and a few bundle files.
async fn populated_source() -> TestDb {
    let db = TestDb::new().await;
    let store = &db.store;
    let submission = Submission {
        project: db.project,
        workflow: Some((Some("flow".into()), "name: flow\ntasks: []\n".into())),
        tasks: vec![
            task_with("a", &[], 0, policy(2)),
            task("b", &[]),
            task("c", &[1]),
        ],
    };
    let ids = store.submit(&submission, op("cli", 1)).await.unwrap();
    // A second project, and a task made by a webhook delivery.
    let other = store
        .ensure_project("/elsewhere/widgets", Timestamp(2))
        .await
        .unwrap();
    store
        .submit_once(
            &[
                Delivery::new("github", "d-1"),
                Delivery::new("github-issue", "acme/w#1"),
            ],
            &Submission {
                project: other.id,
                workflow: None,
                tasks: vec![task("hook", &[])],
            },
            op("webhook", 3),
        )
        .await
        .unwrap();
    // A cron job that fired once.
    let job = store
        .add_job(
            &orch_store::jobs::NewJob {
                name: "nightly".into(),
                project: db.project,
                schedule: "0 3 * * *".into(),
                timezone: "Europe/Berlin".into(),
                missed: orch_core::cron::MissedPolicy::CatchUp,
                target: orch_store::jobs::JobTarget::Task(Box::new(task("cron", &[]).spec)),
            },
            Timestamp(3),
        )
        .await
        .unwrap();
    store
        .fire_job(
            job.id,
            Timestamp(3_000),
            orch_core::cron::FiringKind::Scheduled,
            Ok(&Submission {
                project: db.project,
                workflow: None,
                tasks: vec![task("cron", &[])],
            }),
            op("scheduler", 3),
        )
        .await
        .unwrap()
        .unwrap();
    // `a` runs twice: a rejected review, then done with usage.
    let first = store
        .claim_next("w1", LEASE, op("w1", 4))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.task.id, ids[0]);
    let review = ReviewRecord {
        round: 1,
        verdict: ReviewVerdict::Reject,
        reasons: vec!["add a test".into(), "say \"why\"".into()],
        escalated: false,
    };
    store
        .record_review(first.run.id, first.token, review, op("w1", 5))
        .await
        .unwrap();
    store
        .requeue(
            first.run.id,
            first.token,
            Duration::ZERO,
            Some("review"),
            op("w1", 6),
        )
        .await
        .unwrap();
    store.tick(op("scheduler", 7)).await.unwrap();
    let second = store
        .claim_next("w2", LEASE, op("w2", 8))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.task.id, ids[0]);
    let usage = UsageRecord {
        step: "work".into(),
        agent: "sim".into(),
        model: Some("sim-1".into()),
        session_id: Some("sess-1".into()),
        input_tokens: 120,
        output_tokens: 7,
        cost_usd: 0.0125,
    };
    store
        .record_usage(second.run.id, second.token, vec![usage], op("w2", 9))
        .await
        .unwrap();
    // A stranger's heartbeat is refused and counted on the run.
    let _ = store
        .heartbeat(
            second.run.id,
            orch_core::FencingToken::from_bytes([7; 16]),
            LEASE,
            op("x", 9),
        )
        .await;
    store
        .complete(
            second.run.id,
            second.token,
            Outcome::Succeeded,
            None,
            op("w2", 10),
        )
        .await
        .unwrap();
    // A follow-up to the finished task (it has no dependents), pending.
    store
        .reply(ids[0], "one more thing", op("cli", 11))
        .await
        .unwrap();
    // A task asked for values (its run parked) and was answered, a secret sealed.
    let asking = store
        .claim_next("w3", LEASE, op("w3", 11))
        .await
        .unwrap()
        .unwrap();
    let ask = orch_core::info_request::AskFile {
        hint: Some(orch_core::info_request::Hint::Aws),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    store
        .request_input(
            asking.run.id,
            asking.token,
            orch_store::NewInfoRequest {
                step: "deploy".into(),
                ask,
                expires_at: Some(Timestamp(86_400_011)),
            },
            op("w3", 11),
        )
        .await
        .unwrap();
    let sealer = orch_store::secret_box::SecretBox::new(&[3; 32]);
    store
        .answer_input(
            asking.task.id,
            vec![
                orch_store::AnswerValue {
                    key: "AWS_ACCESS_KEY_ID".into(),
                    secret: false,
                    value: "AKIDEXAMPLE".into(),
                },
                orch_store::AnswerValue {
                    key: "AWS_SECRET_ACCESS_KEY".into(),
                    secret: true,
                    value: sealer.encrypt(b"the secret"),
                },
            ],
            op("cli", 11),
        )
        .await
        .unwrap();
    // One more task is running (an active run with a lease).
    store
        .claim_next("w3", LEASE, op("w3", 12))
        .await
        .unwrap()
        .unwrap();
    // The project's repository, the first task's issue and pull request, and outbox ops (one
    // done with its result, one pending).
    let repo = orch_core::forge::RepoSlug::parse("acme/widgets").unwrap();
    store
        .link_project_forge(
            db.project,
            orch_core::forge::ForgeKind::Github,
            &repo,
            Timestamp(13),
        )
        .await
        .unwrap();
    store
        .link_task_issue(ids[0], &repo, 4, Timestamp(13))
        .await
        .unwrap();
    let new_op = |key: &str, task| orch_store::NewForgeOp {
        project: db.project,
        task: Some(task),
        event: Some(1),
        op: orch_core::forge::pull_request_op(task, key, "orch/t", "main", "body", false),
    };
    store
        .enqueue_forge_ops(&[new_op("a", ids[0]), new_op("b", ids[1])], Timestamp(14))
        .await
        .unwrap();
    let claimed = store
        .claim_forge_ops("d", LEASE, 1, Timestamp(15))
        .await
        .unwrap();
    store
        .finish_forge_op(
            claimed[0].id,
            "d",
            &orch_core::forge::ForgeResult::Pull {
                number: 9,
                url: "https://example.com/pull/9".into(),
            },
            Timestamp(16),
        )
        .await
        .unwrap();
    // A reaction of the feedback loop to the pull request.
    store
        .record_forge_reaction(
            &orch_store::NewReaction {
                task: ids[0],
                causes: vec!["merge:abc".into()],
                name: "merge",
                effect: orch_store::ReactionEffect::None,
                ops: Vec::new(),
            },
            op("poller", 16),
        )
        .await
        .unwrap();
    // Bundles.
    let runs = db.dir.path().join("runs");
    for (path, bytes) in [
        ("1/1/result.json", b"{\"status\":\"succeeded\"}\n".to_vec()),
        (
            "1/2/steps/work/stdout.log",
            (0..=255u8).collect::<Vec<u8>>(),
        ),
        ("1/2/empty.txt", Vec::new()),
    ] {
        let path = runs.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    db
}

async fn export(store: &Store, home: &Path, file: &Path) -> Result<archive::Manifest, StoreError> {
    archive::export_home(store, home, file, &archive::no_progress()).await
}

async fn import(
    store: &Store,
    home: &Path,
    file: &Path,
) -> Result<archive::ImportReport, StoreError> {
    archive::import_home(store, home, file, &archive::no_progress()).await
}

/// A populated source home and its archive.
async fn exported_source() -> (TestDb, PathBuf, archive::Manifest) {
    let source = populated_source().await;
    let file = source.dir.path().join("home.tar.gz");
    let manifest = export(&source.store, source.dir.path(), &file)
        .await
        .unwrap();
    (source, file, manifest)
}

/// Every table's lines as a sorted set, and every bundle file's bytes, of an archive.
fn contents(
    file: &Path,
) -> (
    BTreeMap<String, BTreeSet<String>>,
    BTreeMap<PathBuf, Vec<u8>>,
) {
    let mut tables = BTreeMap::new();
    let mut bundles = BTreeMap::new();
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(file).unwrap());
    let mut tar = tar::Archive::new(gz);
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if let Ok(table) = path.strip_prefix("tables") {
            let lines = String::from_utf8(bytes).unwrap();
            let set: BTreeSet<String> = lines.lines().map(str::to_owned).collect();
            assert_eq!(
                set.len(),
                lines.lines().count(),
                "no duplicate rows in {table:?}"
            );
            tables.insert(table.display().to_string(), set);
        } else if path.starts_with("runs") {
            bundles.insert(path, bytes);
        }
    }
    (tables, bundles)
}

async fn snapshot(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for task in store.tasks(&TaskFilter::default()).await.unwrap() {
        out.push(format!("{task:?}"));
        out.push(format!("{:?}", store.runs(task.id).await.unwrap()));
        out.push(format!("{:?}", store.events(task.id).await.unwrap()));
        out.push(format!("{:?}", store.task_usage(task.id).await.unwrap()));
        out.push(format!("{:?}", store.info_requests(task.id).await.unwrap()));
        out.push(format!(
            "{:?}",
            store.forge_feedback(task.id).await.unwrap()
        ));
    }
    out.push(format!("{:?}", store.projects().await.unwrap()));
    for job in store.jobs().await.unwrap() {
        out.push(format!(
            "{:?}",
            store.job_firings(job.id, 100).await.unwrap()
        ));
        out.push(format!("{job:?}"));
    }
    out.push(format!("{:?}", store.usage_summary(36500).await.unwrap()));
    out
}

async fn a_home_round_trips_through_an_archive_unchanged(target: Target) {
    let source = populated_source().await;
    let out = tempfile::tempdir().unwrap();
    let first = out.path().join("first.tar.gz");
    let manifest = export(&source.store, source.dir.path(), &first)
        .await
        .unwrap();
    assert_eq!(manifest.format_version, archive::FORMAT_VERSION);
    assert_eq!(manifest.source_backend, "sqlite");
    assert_eq!(manifest.bundle_files, 3);
    for table in Table::ALL {
        assert!(manifest.rows[&table] > 0, "the source has rows in {table}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&first).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Nothing but the archive is left beside it (no spool, no temporary file).
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1);

    let report = import(&target.store, target.home.path(), &first)
        .await
        .unwrap();
    assert_eq!(
        report.rows,
        manifest.rows.clone(),
        "every row of every table was imported"
    );
    let problems = source.store.check_consistency().await.unwrap();
    assert!(problems.is_empty(), "source: {problems:?}");
    let problems = target.store.check_consistency().await.unwrap();
    assert!(problems.is_empty(), "target: {problems:?}");
    assert_eq!(snapshot(&target.store).await, snapshot(&source.store).await);
    assert_eq!(
        target.store.last_event_id().await.unwrap(),
        source.store.last_event_id().await.unwrap()
    );
    assert!(!target.home.path().join(".import-staging").exists());

    let second = out.path().join("second.tar.gz");
    let again = export(&target.store, target.home.path(), &second)
        .await
        .unwrap();
    assert_eq!(again.rows, manifest.rows);
    let (tables_1, bundles_1) = contents(&first);
    let (tables_2, bundles_2) = contents(&second);
    assert_eq!(tables_1.len(), Table::ALL.len());
    assert_eq!(tables_1, tables_2, "the same rows");
    assert_eq!(bundles_1, bundles_2, "the same bundle files, byte for byte");
    assert_eq!(bundles_1.len(), 3);

    // The imported database goes on working: new ids continue past the imported ones.
    let before = target.store.last_event_id().await.unwrap();
    let new = target
        .store
        .submit(
            &Submission {
                project: ProjectId(1),
                workflow: None,
                tasks: vec![task("new", &[])],
            },
            op("cli", 100),
        )
        .await
        .unwrap();
    assert!(new[0].0 > 4, "{new:?}");
    assert!(target.store.last_event_id().await.unwrap() > before);
    // The imported runs keep their token hashes: the running task's worker is no one here,
    // but its token would still be checked (a made-up one is refused).
    let running = target
        .store
        .tasks(&TaskFilter {
            status: Some(orch_core::Status::Running),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    let run = target.store.runs(running[0].id).await.unwrap()[0].id;
    let refused = target
        .store
        .heartbeat(
            run,
            orch_core::FencingToken::from_bytes([7; 16]),
            LEASE,
            op("w3", 101),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::NotLeaseHolder { .. }),
        "{refused}"
    );
}

async fn an_import_into_a_database_that_holds_data_is_refused_and_changes_nothing(target: Target) {
    let (_source, file, _) = exported_source().await;
    target
        .store
        .ensure_project("/already/here", Timestamp(5))
        .await
        .unwrap();
    let before = snapshot(&target.store).await;
    let error = import(&target.store, target.home.path(), &file)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("already holds data"), "{error}");
    assert_eq!(snapshot(&target.store).await, before);
    assert!(!target.home.path().join("runs").exists());
    assert!(target
        .store
        .tasks(&TaskFilter::default())
        .await
        .unwrap()
        .is_empty());
}

async fn an_import_into_a_home_with_bundles_is_refused(target: Target) {
    let (_source, file, _) = exported_source().await;
    let old = target.home.path().join("runs/9/1/result.json");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, "old").unwrap();
    let error = import(&target.store, target.home.path(), &file)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("already holds run bundles"),
        "{error}"
    );
    assert!(target.store.is_empty().await.unwrap());
    assert_eq!(std::fs::read_to_string(&old).unwrap(), "old");
}

/// Import `bytes` as an archive: it must fail with a message containing `expected` and leave
/// the target empty, with no bundles and no staging directory.
async fn refused_unchanged(target: &Target, bytes: &[u8], expected: &str) {
    let file = target.home.path().join("bad.tar.gz");
    std::fs::write(&file, bytes).unwrap();
    let error = import(&target.store, target.home.path(), &file)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Invalid { .. }),
        "a damaged archive is the user's input: {error:?}"
    );
    assert!(error.to_string().contains(expected), "{error}");
    assert!(
        error.to_string().contains("nothing was imported"),
        "{error}"
    );
    assert!(
        target.store.is_empty().await.unwrap(),
        "{expected}: nothing imported"
    );
    assert!(!target.home.path().join("runs").exists());
    assert!(!target.home.path().join(".import-staging").exists());
}

/// A tar.gz of these entries.
fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (name, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        // Written by hand: `tar` itself refuses to write a `..` path.
        let raw = &mut header.as_gnu_mut().unwrap().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, *bytes).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

async fn a_damaged_archive_is_refused_with_a_clear_error_and_changes_nothing(target: Target) {
    let (_source, file, manifest) = exported_source().await;
    let good = std::fs::read(&file).unwrap();

    // Truncated anywhere: cut in the middle, and only gzip's 8-byte trailer missing.
    refused_unchanged(&target, &good[..good.len() / 2], "damaged").await;
    refused_unchanged(&target, &good[..good.len() - 4], "damaged").await;
    // A flipped byte in the compressed data.
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    refused_unchanged(&target, &flipped, "").await;
    // Not an archive at all.
    refused_unchanged(&target, b"hello, I am a text file\n", "damaged").await;

    // A manifest of a format this orch does not read.
    let mut future = manifest.clone();
    future.format_version = archive::FORMAT_VERSION + 1;
    let text = serde_json::to_vec(&future).unwrap();
    refused_unchanged(
        &target,
        &tar_gz(&[("manifest.json", &text)]),
        "format version",
    )
    .await;
    // A table with fewer rows than its manifest says (a valid tar.gz, rewritten by hand).
    let (tables, bundles) = contents(&file);
    let manifest_text = serde_json::to_vec(&manifest).unwrap();
    let table_texts: Vec<(String, String)> = Table::ALL
        .iter()
        .map(|t| {
            let lines = tables[&format!("{}.jsonl", t.name())]
                .iter()
                .map(|l| format!("{l}\n"))
                .collect::<String>();
            (format!("tables/{}.jsonl", t.name()), lines)
        })
        .collect();
    // The manifest, these tables, and these other files, as an archive.
    let archive_of = |tables: &[(String, String)], more: &[(String, Vec<u8>)]| {
        let mut entries: Vec<(&str, &[u8])> = vec![("manifest.json", &manifest_text)];
        entries.extend(tables.iter().map(|(n, t)| (n.as_str(), t.as_bytes())));
        entries.extend(more.iter().map(|(n, b)| (n.as_str(), b.as_slice())));
        tar_gz(&entries)
    };
    let mut fewer = table_texts.clone();
    let tasks = &mut fewer[2].1;
    *tasks = tasks.split_once('\n').unwrap().1.to_owned();
    refused_unchanged(&target, &archive_of(&fewer, &[]), "table tasks has").await;
    // A row that does not parse.
    let mut broken = table_texts.clone();
    broken[2].1 = "{\"id\": \"seven\"}\n".into();
    refused_unchanged(
        &target,
        &archive_of(&broken, &[]),
        "tables/tasks.jsonl line 1",
    )
    .await;
    // A bundle path that climbs out of the home.
    let evil = archive_of(&[], &[("runs/../../evil.txt".into(), b"x".to_vec())]);
    refused_unchanged(&target, &evil, "outside the home").await;
    assert!(!target
        .home
        .path()
        .parent()
        .unwrap()
        .join("evil.txt")
        .exists());
    // A row the database refuses (a run of a task that is not in the archive): rolled back.
    let mut orphan = table_texts.clone();
    let runs = Table::ALL.iter().position(|t| *t == Table::Runs).unwrap();
    orphan[runs].1 = orphan[runs]
        .1
        .replacen("\"task_id\":1,", "\"task_id\":999,", 1);
    // The bundle count must match too: add them back.
    let bundle_entries: Vec<(String, Vec<u8>)> = bundles
        .iter()
        .map(|(p, b)| (p.display().to_string(), b.clone()))
        .collect();
    let error_text = {
        let file = target.home.path().join("orphan.tar.gz");
        std::fs::write(&file, archive_of(&orphan, &bundle_entries)).unwrap();
        import(&target.store, target.home.path(), &file)
            .await
            .unwrap_err()
            .to_string()
    };
    assert!(
        error_text.contains("FOREIGN KEY") || error_text.contains("foreign key"),
        "{error_text}"
    );
    assert!(target.store.is_empty().await.unwrap());
    assert!(!target.home.path().join("runs").exists());
}

archive_tests!(
    a_home_round_trips_through_an_archive_unchanged,
    an_import_into_a_database_that_holds_data_is_refused_and_changes_nothing,
    an_import_into_a_home_with_bundles_is_refused,
    a_damaged_archive_is_refused_with_a_clear_error_and_changes_nothing,
);
