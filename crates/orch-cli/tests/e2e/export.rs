//! `orch admin export` / `orch admin import` end to end: a home that ran real work (exec and
//! `sim` steps with dependencies, a rejected then approved review, usage, a follow-up reply, a
//! GitHub webhook delivery) through `orch serve`, exported, imported into a fresh home, exported
//! again.
//!
//! The import target is a [`Target`]: a fresh SQLite home, and a fresh home on a new database of
//! `ORCH_TEST_POSTGRES_URL` (SQLite → PostgreSQL → archive again), with the same assertions.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::support::{Backend, Finished, Home, Repo, SERVE_DEADLINE};
use crate::webhooks::{deliver, sign};

const WORKFLOW: &str = r#"
name: export
tasks:
  - id: build
    title: Build
    steps:
      - name: make
        exec:
          - argv: [touch, built.txt]
  - id: greet
    title: Write the greeting
    needs: [build]
    steps:
      - name: write
        agent: sim
        prompt: |
          Write the greeting.
          @write greeting.txt
          hello
          @end
  - id: check
    title: Check
    needs: [greet]
    steps:
      - name: list
        exec:
          - argv: [ls, -la]
"#;

/// Where an archive is imported.
enum Target {
    /// A fresh home with its SQLite file.
    Sqlite(Home),
    /// A fresh home on a fresh PostgreSQL database (`--database`).
    Postgres(Home),
}

impl Target {
    /// Every target this machine can test: SQLite, and PostgreSQL when
    /// `ORCH_TEST_POSTGRES_URL` names a server (required in CI).
    fn all() -> Vec<Target> {
        let mut all = vec![Target::Sqlite(Home::new())];
        if let Some(home) = Home::with_backend(Backend::Postgres, "export::Target::Postgres") {
            all.push(Target::Postgres(home));
        }
        all
    }

    fn home(&self) -> &Home {
        match self {
            Target::Sqlite(home) | Target::Postgres(home) => home,
        }
    }

    /// `orch <args>` against the target's database, to the end.
    fn run(&self, args: &[&str]) -> Finished {
        self.home().run(args)
    }

    fn json(&self, args: &[&str]) -> Value {
        let finished = self.run(args);
        finished.expect_code(0, &format!("orch {}", args.join(" ")));
        finished.json()
    }
}

/// A home that ran the workflow with a reviewer that rejects once, and a reply.
fn home_with_history(repo: &Repo) -> (Home, BTreeMap<String, i64>) {
    let home = Home::new();
    let ids = home.submit("export", WORKFLOW, repo.path());
    home.serve_until_idle(2);
    for (key, id) in &ids {
        assert_eq!(home.task_status(*id), "done", "{key}");
    }
    let replied = home.json(&[
        "task",
        "reply",
        &ids["greet"].to_string(),
        "@write reply.txt\nmore\n@end",
        "--json",
    ]);
    assert_eq!(replied["status"], "queued", "{replied}");
    home.serve_until_idle(1);
    deliver_issue(&home, repo);
    (home, ids)
}

/// A GitHub issue delivered to the daemon (no workers): a queued task and a recorded delivery.
fn deliver_issue(home: &Home, repo: &Repo) {
    let secret = "export-webhook-secret";
    let secret_file = home.write("github-secret", &format!("{secret}\n"));
    let serve = home.serve(&[
        "--workers",
        "0",
        "--github-webhook-secret-file",
        secret_file.to_str().unwrap(),
        "--github-project",
        repo.path().to_str().unwrap(),
    ]);
    let addr = home.serve_addr();
    let payload = json!({
        "action": "opened",
        "issue": {
            "number": 7, "title": "Document the export", "body": "Please.",
            "html_url": "https://github.com/acme/widgets/issues/7", "state": "open",
            "labels": [{ "name": "orch" }], "user": { "login": "octocat" },
        },
        "repository": { "full_name": "acme/widgets" },
        "sender": { "login": "octocat" },
    })
    .to_string();
    let url = format!("http://{addr}/v1/webhooks/github");
    let (status, body) = deliver(
        &url,
        "issues",
        "delivery-1",
        payload.as_bytes(),
        &sign(secret, payload.as_bytes()),
    );
    assert_eq!(status, 201, "{body}");
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");
}

fn review_repo() -> Repo {
    Repo::new(&[
        (
            ".orch.toml",
            "[review]\nagent = \"sim\"\nmax_review_rounds = 3\n",
        ),
        (
            ".orch/prompts/review.j2",
            r#"Review round {{ round }}.
{% if round == 1 %}
@answer {"verdict": "reject", "reasons": ["say more"]}
{% else %}
@answer {"verdict": "approve", "reasons": ["fine"]}
{% endif %}
"#,
        ),
    ])
}

/// Every table's lines as a sorted set, and every bundle file's bytes.
type Contents = (
    BTreeMap<String, BTreeSet<String>>,
    BTreeMap<PathBuf, Vec<u8>>,
);

fn contents(file: &Path) -> Contents {
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
            let text = String::from_utf8(bytes).unwrap();
            tables.insert(
                table.display().to_string(),
                text.lines().map(str::to_owned).collect(),
            );
        } else if path.starts_with("runs") {
            bundles.insert(path, bytes);
        }
    }
    (tables, bundles)
}

fn export(home_run: impl Fn(&[&str]) -> Finished, file: &Path) -> Value {
    let finished = home_run(&["admin", "export", file.to_str().unwrap(), "--json"]);
    finished.expect_code(0, "orch admin export");
    finished.json()
}

/// `task get --json` with the home's path made neutral (bundle paths name it), without the
/// `branch` view: that is read from the home's worktrees, which an archive does not carry
/// (docs/export.md), so a moved home shows it again only for tasks it runs itself.
fn task_get(run: impl Fn(&[&str]) -> Finished, home: &Path, id: i64) -> String {
    let finished = run(&["task", "get", &id.to_string(), "--json"]);
    finished.expect_code(0, "orch task get");
    let mut task: Value =
        serde_json::from_str(&finished.stdout.replace(home.to_str().unwrap(), "<home>"))
            .expect("task get --json prints JSON");
    task.as_object_mut().expect("an object").remove("branch");
    serde_json::to_string_pretty(&task).expect("JSON")
}

#[test]
fn a_home_moves_through_an_archive_with_every_row_and_bundle_and_exports_the_same_again() {
    let repo = review_repo();
    let (source, ids) = home_with_history(&repo);
    let out = tempfile::tempdir().unwrap();
    let first = out.path().join("first.tar.gz");
    let manifest = export(|a| source.run(a), &first)["manifest"].clone();
    for table in [
        "projects",
        "workflows",
        "tasks",
        "task_deps",
        "runs",
        "events",
        "agent_usage",
        "task_replies",
        "reviews",
        "webhook_deliveries",
    ] {
        assert!(
            manifest["rows"][table].as_u64().unwrap() > 0,
            "the source has {table} rows: {manifest}"
        );
    }
    assert!(
        manifest["bundle_files"].as_u64().unwrap() > 10,
        "{manifest}"
    );

    for target in Target::all() {
        let imported = target.run(&["admin", "import", first.to_str().unwrap()]);
        imported.expect_code(0, "orch admin import");
        assert!(
            imported.stdout.contains("imported") && imported.stdout.contains("ok: 4 task(s)"),
            "{}",
            imported.stdout
        );
        source
            .run(&["doctor", "--json"])
            .expect_code(0, "orch doctor on the source");
        target
            .run(&["doctor", "--json"])
            .expect_code(0, "orch doctor on the target");
        assert_eq!(
            target.json(&["task", "list", "--json"]),
            source.json(&["task", "list", "--json"])
        );
        for id in ids.values() {
            assert_eq!(
                task_get(|a| target.run(a), target.home().path(), *id),
                task_get(|a| source.run(a), source.path(), *id)
            );
        }
        let second = out.path().join("second.tar.gz");
        export(|a| target.run(a), &second);
        let (tables_1, bundles_1) = contents(&first);
        let (tables_2, bundles_2) = contents(&second);
        assert_eq!(tables_1, tables_2, "the same rows in every table");
        assert_eq!(bundles_1, bundles_2, "the same bundle files, byte for byte");
        assert_eq!(
            bundles_1.len() as u64,
            manifest["bundle_files"].as_u64().unwrap()
        );
        // The moved home's artifacts are where `task get` says.
        let review = target.home().run_dir(ids["greet"], 1).join("review.json");
        assert!(review.is_file(), "{}", review.display());
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&review), 0o600, "imported bundle files are private");
        assert_eq!(mode(&first), 0o600, "the archive is private");
    }
}

#[test]
fn an_import_into_a_home_that_has_data_or_from_a_damaged_archive_changes_nothing() {
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let source = Home::new();
    let ids = source.submit("export", WORKFLOW, repo.path());
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("home.tar.gz");
    export(|a| source.run(a), &file);

    // Into itself: the database holds data.
    let before = source.json(&["task", "list", "--json"]);
    let events = source.query_int("SELECT COUNT(*) FROM events");
    let refused = source.run(&["admin", "import", file.to_str().unwrap()]);
    refused.expect_code(2, "orch admin import into a home with data");
    assert!(
        refused.stderr.contains("already holds data"),
        "{}",
        refused.stderr
    );
    assert_eq!(source.json(&["task", "list", "--json"]), before);
    assert_eq!(source.query_int("SELECT COUNT(*) FROM events"), events);

    // A truncated archive into an empty home.
    let bytes = std::fs::read(&file).unwrap();
    let truncated = out.path().join("truncated.tar.gz");
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    for target in Target::all() {
        let refused = target.run(&["admin", "import", truncated.to_str().unwrap()]);
        refused.expect_code(2, "orch admin import of a truncated archive");
        assert!(
            refused.stderr.contains("damaged") && refused.stderr.contains("nothing was imported"),
            "{}",
            refused.stderr
        );
        assert!(target.json(&["task", "list", "--json"])["tasks"]
            .as_array()
            .is_none_or(Vec::is_empty));
        assert!(!target.home().path().join("runs").exists());
        // The same archive, whole, still goes in afterwards.
        target
            .run(&["admin", "import", file.to_str().unwrap()])
            .expect_code(0, "orch admin import of the whole archive");
        assert_eq!(
            target.json(&["task", "get", &ids["build"].to_string(), "--json"])["task"]["status"],
            "queued"
        );
    }
    let missing = source.run(&["admin", "import", "/nonexistent/archive.tar.gz"]);
    missing.expect_code(2, "orch admin import of a missing file");
}

#[test]
fn export_is_refused_while_the_daemon_runs_in_the_home() {
    let home = Home::new();
    home.run(&["init"]).expect_code(0, "orch init");
    let serve = home.serve(&["--workers", "0"]);
    home.serve_addr();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("home.tar.gz");
    let refused = home.run(&["admin", "export", file.to_str().unwrap()]);
    refused.expect_code(2, "orch admin export while serve runs");
    assert!(refused.stderr.contains("stop it"), "{}", refused.stderr);
    assert!(!file.exists());
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    serve.kill();
}
