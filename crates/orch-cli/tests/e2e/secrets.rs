//! Secrets never reach disk or an answer in the clear: token formats, a `secret_env` value and
//! orch's own admin and worker tokens, printed by a step (whole and split across two writes with
//! a pause between), written by the step into files of its bundle directory, passed as `--exec`
//! arguments, bodies and labels at submit, and streamed and uploaded by a remote worker. Then no
//! raw occurrence may be left in any file under the daemon's home (database, WAL, bundles,
//! logs), in a dump of every table, in `orch task get --json` or in the API's answers; and no
//! file or directory under the home has group or other permission bits.
//!
//! Sample tokens are assembled at run time so that repository secret scanners do not flag this
//! file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::sys::signal::Signal;

use crate::support::{int, poll_until, Home, Repo, SERVE_DEADLINE};

/// The value of the project's `secret_env` variable.
const SECRET_ENV_VALUE: &str = "env-secret-Qm9ZxY71pL";

/// A secret as the step prints it, and the part that must never be stored raw.
struct Sample {
    printed: String,
    raw: String,
}

fn sample(printed: String) -> Sample {
    Sample {
        raw: printed.clone(),
        printed,
    }
}

/// One line per format the redactor knows (the PEM key block is written separately).
fn samples() -> Vec<Sample> {
    let aws_secret = format!("wJalrXUtnFEMI/K7MDENG/{}", "bPxRfiCYEXAMPLEKEY");
    vec![
        sample(format!("ghp_{}", "a1B2".repeat(9))),
        sample(format!("github_pat_{}", "11AB_cd".repeat(4))),
        sample(format!("AKIA{}", "IOSFODNN7EXAMPLE")),
        Sample {
            printed: format!("aws_secret_access_key={aws_secret}"),
            raw: aws_secret,
        },
        sample(format!("xoxb-{}", "1234567890-abcdef")),
        sample(format!("sk-{}", "Ab12Cd34Ef56Gh78Ij90")),
        sample(format!("sk-proj-{}", "x_y-z".repeat(5))),
        sample(format!("sk-ant-{}", "api03-Ab_cD-ef".repeat(2))),
        sample(format!("AIza{}", "SyA1234567890abcdefghijklmnopqrstuv")),
        sample(format!(
            "eyJ{}.{}.{}",
            "hbGciOiJIUzI1NiJ9", "eyJzdWIiOiIxMjM0In0", "dBjftJeZ4CVPmB92K27uhbUJU1p1r"
        )),
        sample(format!("sk_live_{}", "4eC39HqLyjWDarjtT1zdp7dc")),
        Sample {
            printed: "password=Tr0ub4dor-and-3".to_owned(),
            raw: "Tr0ub4dor-and-3".to_owned(),
        },
    ]
}

/// The body of the PEM private key block the step prints.
const PEM_BODY: &str = "MIIEpAIBAAKCAQEA7hUnIqPrivateKeyBodyForTests";

fn pem_block() -> String {
    format!(
        "-----BEGIN RSA {}-----\n{PEM_BODY}\nZZZZ/+==\n-----END RSA {}-----\n",
        "PRIVATE KEY", "PRIVATE KEY"
    )
}

/// The step: every line to stdout and stderr, whole and split across two writes with a pause,
/// the key block, the secret env value, and copies of it all into files of its bundle directory
/// (a nested and a hidden one).
const EMIT_SH: &str = r#"set -e
feed="$1"
while IFS= read -r line; do
  echo "out: $line"
  echo "err: $line" >&2
  half=$(( ${#line} / 2 ))
  printf 'split: %s' "${line:0:$half}"
  sleep 0.05
  printf '%s\n' "${line:$half}"
done < "$feed/lines.txt"
cat "$feed/pem.txt"
echo "env: $DEMO_SECRET"
# The run's bundle, found from the scratch area orch names in ORCH_CONTEXT
# (<home>/scratch/<task>/context.json); only reachable because this test turns the sandbox off.
ORCH_BUNDLE="$(dirname "$(dirname "$(dirname "$ORCH_CONTEXT")")")/runs/$ORCH_TASK_ID/$ORCH_ATTEMPT"
mkdir -p "$ORCH_BUNDLE/outputs/deep"
cp "$feed/lines.txt" "$ORCH_BUNDLE/steps/$ORCH_STEP/notes.txt"
cat "$feed/lines.txt" "$feed/pem.txt" > "$ORCH_BUNDLE/outputs/deep/copy.txt"
echo "$DEMO_SECRET" > "$ORCH_BUNDLE/outputs/.hidden"
cat "$feed/lines.txt" >> "$ORCH_BUNDLE/steps/$ORCH_STEP/extra.log"
"#;

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Every file under `dir` (binary-safe, hidden ones too) that holds one of `needles`, except
/// the token files, where orch's own tokens are kept (0600).
fn raw_occurrences(dir: &Path, needles: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.expect("walk the home");
        let token_file = ["token", "worker-token"]
            .iter()
            .any(|name| entry.path() == dir.join(name));
        if !entry.file_type().is_file() || token_file {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        for needle in needles {
            if contains(&bytes, needle) {
                found.push(format!("{} holds {needle}", entry.path().display()));
            }
        }
    }
    found
}

/// Files and directories under `dir` that group or others may access.
fn not_private(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| !entry.path_is_symlink())
        .filter_map(|entry| {
            let mode = entry.metadata().ok()?.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then(|| format!("{} has mode {mode:o}", entry.path().display()))
        })
        .collect()
}

/// Every row of every table as text, like `sqlite3 .dump` (the sqlite3 shell may be absent).
fn dump_database(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).expect("open the database");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .expect("list tables");
    let mut dump = String::new();
    for table in tables {
        let mut statement = conn
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .expect("select");
        let columns = statement.column_count();
        let mut rows = statement.query([]).expect("query");
        while let Some(row) = rows.next().expect("row") {
            dump.push_str(&table);
            for column in 0..columns {
                let value: rusqlite::types::Value = row.get(column).expect("value");
                dump.push_str(&format!(" {value:?}"));
            }
            dump.push('\n');
        }
    }
    dump
}

/// The run: a daemon (with `embedded` workers) and, when `remote`, an `orch worker` with its own
/// home that runs every task.
fn secrets_never_stored_raw(remote: bool) {
    let home = Home::new();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the home");
    let feed = tempfile::tempdir().expect("a directory outside the home");
    let repo = Repo::new(&[
        (".orch.toml", "secret_env = [\"DEMO_SECRET\"]\n"),
        ("emit.sh", EMIT_SH),
    ]);
    let project = repo.path().to_str().expect("UTF-8 path");

    // Before the daemon: a task added through the store, a token in its argv, body and label.
    let token_before = samples()[0].printed.clone();
    let added = home.run(&[
        "task",
        "add",
        "Before the daemon",
        "--project",
        project,
        "--body",
        &format!("use {token_before}"),
        "--label",
        &format!("key:{token_before}"),
        "--exec",
        &format!("echo {token_before}"),
        "--json",
    ]);
    added.expect_code(0, "orch task add");
    assert!(
        added.stderr.contains("looked like a secret") && added.stderr.contains("secret_env"),
        "no warning on stderr: {}",
        added.stderr
    );

    let workers = if remote { "0" } else { "1" };
    let serve = home.spawn_with_env(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            workers,
            "--lease",
            "2s",
            "--grace",
            "1s",
        ],
        // Sandbox off: with it on, a step cannot write into its bundle at all (the escape
        // suite checks that); off, the end-of-run scan is what keeps such files clean.
        &[("DEMO_SECRET", SECRET_ENV_VALUE), ("ORCH_SANDBOX", "off")],
    );
    let addr = poll_until("serve.addr", SERVE_DEADLINE, || {
        Some(read_trimmed(&home.path().join("serve.addr"))).filter(|a| !a.is_empty())
    });
    let server = format!("http://{addr}");
    let admin_token = read_trimmed(&home.path().join("token"));
    let worker_token = read_trimmed(&home.path().join("worker-token"));
    let home_mode = std::fs::metadata(home.path())
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(home_mode, 0o700, "the daemon made its home private");

    let mut lines: Vec<String> = samples().into_iter().map(|s| s.printed).collect();
    lines.push(admin_token.clone());
    lines.push(worker_token.clone());
    std::fs::write(feed.path().join("lines.txt"), lines.join("\n") + "\n").expect("write");
    std::fs::write(feed.path().join("pem.txt"), pem_block()).expect("write");

    // Through the API: orch's own tokens and a known format in an `--exec` argument.
    let token_file = home.path().join("token").display().to_string();
    let api = |args: &[&str]| {
        let mut all = vec![
            "--server",
            server.as_str(),
            "--token-file",
            token_file.as_str(),
        ];
        all.extend_from_slice(args);
        home.run(&all)
    };
    let via_api = api(&[
        "task",
        "add",
        "Through the API",
        "--project",
        project,
        "--exec",
        &format!("echo {admin_token} {worker_token} {}", samples()[4].printed),
        "--json",
    ]);
    via_api.expect_code(0, "orch task add through the API");
    assert!(
        via_api.stderr.contains("looked like a secret"),
        "no warning: {}",
        via_api.stderr
    );
    let feed_dir = feed.path().to_str().expect("UTF-8 path");
    let emit = api(&[
        "task",
        "add",
        "Emit secrets",
        "--project",
        project,
        "--exec",
        &format!("bash emit.sh {feed_dir}"),
        "--json",
    ]);
    emit.expect_code(0, "orch task add emit");
    let ids = [
        int(&added.json(), "id"),
        int(&via_api.json(), "id"),
        int(&emit.json(), "id"),
    ];

    let worker_home = Home::new();
    let worker = remote.then(|| {
        worker_home.spawn_with_env(
            &[
                "worker", "--server", &server, "--name", "remote", "--slots", "1", "--lease", "2s",
                "--grace", "1s",
            ],
            &[
                ("ORCH_WORKER_TOKEN", worker_token.as_str()),
                ("DEMO_SECRET", SECRET_ENV_VALUE),
                ("ORCH_SANDBOX", "off"),
            ],
        )
    });
    poll_until("every task to finish", SERVE_DEADLINE, || {
        ids.iter()
            .all(|id| ["done", "failed"].contains(&home.task_status(*id).as_str()))
            .then_some(())
    });
    for id in ids {
        assert_eq!(home.task_status(id), "done", "{:#}", home.task(id));
    }
    let emit_id = ids[2];
    let stdout = read_trimmed(&home.run_dir(emit_id, 1).join("steps/exec/cmd-1.stdout.log"));
    // The step really printed (redacted) and really wrote into its bundle directory.
    assert!(stdout.contains("out: [REDACTED:github_token]"), "{stdout}");
    assert!(stdout.contains("split: [REDACTED:"), "{stdout}");
    assert!(stdout.contains("[REDACTED:secret_value]"), "{stdout}");
    assert!(home
        .run_dir(emit_id, 1)
        .join("outputs/deep/copy.txt")
        .exists());

    let mut needles: Vec<String> = samples().into_iter().map(|s| s.raw).collect();
    needles.extend([
        PEM_BODY.to_owned(),
        SECRET_ENV_VALUE.to_owned(),
        admin_token.clone(),
        worker_token.clone(),
    ]);

    // Answers: `task get --json` (through the API too) and the API's task list.
    for id in ids {
        let id = id.to_string();
        for answer in [
            api(&["task", "get", &id, "--json"]),
            home.run(&["task", "get", &id, "--json"]),
        ] {
            answer.expect_code(0, "orch task get");
            for needle in &needles {
                assert!(
                    !answer.stdout.contains(needle.as_str()),
                    "task {id}: {needle}"
                );
            }
        }
    }
    let list = api(&["task", "list", "--json"]);
    for needle in &needles {
        assert!(!list.stdout.contains(needle.as_str()), "list: {needle}");
    }

    if let Some(worker) = worker {
        worker.signal(Signal::SIGTERM);
        worker
            .finish(SERVE_DEADLINE)
            .expect_code(0, "orch worker after SIGTERM");
    }
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");

    assert_eq!(raw_occurrences(home.path(), &needles), Vec::<String>::new());
    let dump = dump_database(&home.database());
    for needle in &needles {
        assert!(
            !dump.contains(needle.as_str()),
            "the database holds {needle}"
        );
    }
    assert!(
        dump.contains("[REDACTED:github_token]"),
        "the spec was redacted"
    );
    assert_eq!(not_private(home.path()), Vec::<String>::new());
    if remote {
        // The remote worker cannot redact the daemon's admin token, which it is never told; it
        // redacts everything it knows: the formats, its worker token and the secret env value.
        let known: Vec<String> = needles
            .iter()
            .filter(|needle| **needle != admin_token)
            .cloned()
            .collect();
        assert_eq!(
            raw_occurrences(worker_home.path(), &known),
            Vec::<String>::new()
        );
        assert_eq!(not_private(worker_home.path()), Vec::<String>::new());
    }
}

#[test]
fn no_secret_is_stored_raw_when_an_embedded_worker_runs_the_steps() {
    secrets_never_stored_raw(false);
}

#[test]
fn no_secret_is_stored_raw_when_a_remote_worker_streams_and_uploads_the_bundle() {
    secrets_never_stored_raw(true);
}
