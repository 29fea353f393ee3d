//! Info requests end to end, with the real `orch` binaries: a step asks for an AWS key pair
//! (`orch ask --hint aws`), its task waits in `awaiting_input` while another task runs on the
//! only worker slot, the daemon is SIGKILLed and restarted, the answer comes through
//! `orch task answer` (the secret on stdin), and the step runs again and sees the values. The
//! raw secret is then nowhere under the home (database, WAL, bundles, logs), nor in the
//! database (a dump of the SQLite file, `pg_dump` of the PostgreSQL database), and the API shows
//! it only as `secret` without a value. A hostile step cannot answer itself, forge an answer
//! through the ask file, or make the worker read a file through a link.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use nix::sys::signal::Signal;
use sha2::Digest;

use crate::support::{
    int, on_both_backends, poll_until, read_text, Home, Repo, SharedDatabase, ORCH, SERVE_DEADLINE,
};

/// The secret access key the human gives (not in a format the redactor knows by shape: only
/// orch's knowledge that it is an answered secret can redact it).
const SECRET: &str = "Zq81-Lm0PxW-s3cr3t-9fTbVv2Kd";
const KEY_ID: &str = "AKIDEXAMPLEKEYID";

/// Step 1 leaves a file (checkpointed, so never run again); step 2 asks, then uses the values.
const DEPLOY_SH: &str = r#"set -e
"$1" ask --hint aws --reason "the deploy needs AWS credentials" || exit $?
echo "key id: $AWS_ACCESS_KEY_ID"
echo "secret: $AWS_SECRET_ACCESS_KEY"
printf '%s' "$AWS_SECRET_ACCESS_KEY" | sha256sum | cut -c1-64 | sed 's/^/secret sha256: /'
"#;

fn start(home: &Home) -> (crate::support::Process, String) {
    let serve = home.spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--lease",
        "2s",
        "--grace",
        "1s",
    ]);
    let addr = home.serve_addr();
    (serve, addr)
}

fn wait_for_status(home: &Home, id: i64, status: &str) {
    poll_until(&format!("task {id} {status}"), SERVE_DEADLINE, || {
        let now = home.task_status(id);
        assert!(
            !(["failed", "needs_review", "cancelled"].contains(&now.as_str()) && now != status),
            "task {id} is {now}: {:#}",
            home.task(id)
        );
        (now == status).then_some(())
    });
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Files under `dir` holding `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| std::fs::read(e.path()).is_ok_and(|bytes| contains(&bytes, needle)))
        .map(|e| e.path().display().to_string())
        .collect()
}

/// `orch task answer` with `stdin` fed to it.
fn answer(home: &Home, args: &[&str], stdin: &str) -> crate::support::Finished {
    let mut command = home.command(args);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start orch task answer");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait for orch task answer");
    crate::support::Finished {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn an_aws_key_pair_is_asked_for_answered_after_a_crash_and_never_stored_raw(
    database: SharedDatabase,
) {
    let home = Home::on(&database);
    let repo = Repo::new(&[("deploy.sh", DEPLOY_SH)]);
    let project = repo.path().to_str().expect("UTF-8 path");
    let (serve, addr) = start(&home);
    home.write(
        "deploy.yml",
        &format!(
            "title: Deploy\nsteps:\n  - name: prepare\n    exec:\n      - argv: [\"touch\", \"prepared.txt\"]\n  - name: deploy\n    exec:\n      - argv: [\"bash\", \"deploy.sh\", \"{ORCH}\"]\n"
        ),
    );
    let added = home.json(&[
        "task",
        "add",
        "--file",
        home.path().join("deploy.yml").to_str().expect("UTF-8"),
        "--project",
        project,
        "--json",
    ]);
    let deploy = int(&added, "id");
    wait_for_status(&home, deploy, "awaiting_input");

    // The slot is free: another task runs to the end on the only worker while deploy waits.
    let other = int(
        &home.json(&[
            "task",
            "add",
            "Other",
            "--project",
            project,
            "--exec",
            "echo other",
            "--json",
        ]),
        "id",
    );
    wait_for_status(&home, other, "done");
    assert_eq!(home.task_status(deploy), "awaiting_input");
    let active: i64 = home.query_int(&format!(
        "SELECT COUNT(*) FROM runs WHERE task_id = {deploy} AND state = 'active'"
    ));
    assert_eq!(active, 0, "a parked task holds no run");

    let detail = home.task(deploy);
    let request = &detail["info_requests"][0];
    assert_eq!(request["state"], "open", "{detail:#}");
    assert_eq!(request["step"], "deploy");
    assert_eq!(request["hint"], "aws");
    let keys = request["keys"].as_array().expect("keys");
    let secret_key = keys
        .iter()
        .find(|k| k["name"] == "AWS_SECRET_ACCESS_KEY")
        .expect("the secret key is asked for");
    assert_eq!(secret_key["secret"], true);
    let listed = home.run(&["task", "list", "--status", "awaiting_input"]);
    listed.expect_code(0, "orch task list");
    assert!(
        listed.stdout.contains("Deploy"),
        "task list shows it: {}",
        listed.stdout
    );
    let shown = home.run(&["task", "get", &deploy.to_string()]);
    assert!(
        shown.stdout.contains("AWS_SECRET_ACCESS_KEY (secret)"),
        "task get shows what is asked: {}",
        shown.stdout
    );

    // A crash: every request is still waiting after the restart.
    let _ = serve.kill();
    let _ = std::fs::remove_file(home.path().join("serve.addr"));
    let (serve, addr2) = start(&home);
    assert_ne!(addr, "", "{addr2}");
    assert_eq!(home.task_status(deploy), "awaiting_input");
    assert_eq!(home.task(deploy)["info_requests"][0]["state"], "open");

    // A secret on the command line is refused; nothing changes.
    let refused = home.run(&[
        "task",
        "answer",
        &deploy.to_string(),
        &format!("AWS_SECRET_ACCESS_KEY={SECRET}"),
    ]);
    refused.expect_code(2, "a secret in argv");
    assert!(
        refused.stderr.contains("AWS_SECRET_ACCESS_KEY=-"),
        "{}",
        refused.stderr
    );
    assert_eq!(home.task_status(deploy), "awaiting_input");

    // The answer: the key id inline, the secret on stdin (through the running daemon's API).
    let answered = answer(
        &home,
        &[
            "task",
            "answer",
            &deploy.to_string(),
            &format!("AWS_ACCESS_KEY_ID={KEY_ID}"),
            "AWS_SECRET_ACCESS_KEY=-",
            "--json",
        ],
        &format!("{SECRET}\n"),
    );
    answered.expect_code(0, "orch task answer");
    assert_eq!(answered.json()["status"], "queued");
    wait_for_status(&home, deploy, "done");

    // The step saw both values; the secret only as its hash and redacted.
    let run = home.run_dir(deploy, 2);
    let stdout = read_text(&run.join("steps/deploy/stdout.log"));
    let digest = hex::encode(sha2::Sha256::digest(SECRET.as_bytes()));
    assert!(stdout.contains(&format!("key id: {KEY_ID}")), "{stdout}");
    assert!(
        stdout.contains(&format!("secret sha256: {digest}")),
        "{stdout}"
    );
    assert!(stdout.contains("secret: [REDACTED"), "{stdout}");
    // The finished step was not run again.
    let logs = read_text(&run.join("logs.txt"));
    assert!(
        logs.contains("step 1 `prepare` was done by an earlier attempt"),
        "{logs}"
    );
    let events: Vec<String> = home.task(deploy)["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(
        events,
        [
            "create",
            "claim",
            "request_input",
            "answer",
            "claim",
            "complete"
        ],
        "{events:?}"
    );

    // The API shows the answer without the secret.
    let token_file = home.path().join("token").display().to_string();
    let via_api = home.run(&[
        "--server",
        &format!("http://{addr2}"),
        "--token-file",
        &token_file,
        "task",
        "get",
        &deploy.to_string(),
        "--json",
    ]);
    via_api.expect_code(0, "orch task get through the API");
    assert!(!via_api.stdout.contains(SECRET));
    let detail = via_api.json();
    let answers = detail["info_requests"][0]["answers"]
        .as_array()
        .expect("answers")
        .clone();
    let secret_answer = answers
        .iter()
        .find(|a| a["key"] == "AWS_SECRET_ACCESS_KEY")
        .expect("answered");
    assert_eq!(secret_answer["secret"], true);
    assert!(secret_answer["value"].is_null(), "{secret_answer}");
    let id_answer = answers
        .iter()
        .find(|a| a["key"] == "AWS_ACCESS_KEY_ID")
        .expect("answered");
    assert_eq!(id_answer["value"], KEY_ID);

    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");

    // Nowhere raw: every file under the home (bundles, logs, scratch, the SQLite file and WAL
    // when it is there), the shared database file, and a dump of the PostgreSQL database.
    assert_eq!(files_holding(home.path(), SECRET), Vec::<String>::new());
    if database.url().starts_with("sqlite://") {
        let file = home.database();
        for path in [
            file.clone(),
            file.with_extension("db-wal"),
            file.with_extension("db-shm"),
        ] {
            if let Ok(bytes) = std::fs::read(&path) {
                assert!(
                    !contains(&bytes, SECRET),
                    "{} holds the secret",
                    path.display()
                );
            }
        }
    } else {
        let dump = std::process::Command::new("pg_dump")
            .arg(database.url())
            .output()
            .expect("run pg_dump");
        assert!(
            dump.status.success(),
            "{}",
            String::from_utf8_lossy(&dump.stderr)
        );
        assert!(!contains(&dump.stdout, SECRET), "pg_dump holds the secret");
        assert!(
            contains(&dump.stdout, "enc:v1:"),
            "the secret is stored sealed"
        );
    }
}

on_both_backends!(shared: an_aws_key_pair_is_asked_for_answered_after_a_crash_and_never_stored_raw);

/// The hostile step: tries to answer its own request (through `orch task answer`, with every
/// door the step has), then asks.
const SELF_ANSWER_SH: &str = r#"
"$1" task answer "$ORCH_TASK_ID" HOSTILE_KEY=forged > "$ORCH_SCRATCH/tmp/answer.out" 2>&1
echo "self answer exit: $?"
"$1" ask HOSTILE_KEY || exit $?
echo "got: $HOSTILE_KEY"
"#;

/// An ask file that tries to name another task and carry values.
const FORGE_SH: &str = r#"
printf '{"keys": [{"name": "AWS_SECRET_ACCESS_KEY"}], "task": %s, "values": {"AWS_SECRET_ACCESS_KEY": "forged"}}' "$2" > "$ORCH_ASK_FILE"
"#;

/// An ask file that is a link to the home's admin token.
const LINK_SH: &str = r#"
ln -s "$2/token" "$ORCH_ASK_FILE"
"#;

#[test]
fn a_hostile_step_cannot_answer_itself_forge_an_answer_or_read_through_the_channel() {
    let home = Home::new();
    let repo = Repo::new(&[
        ("self.sh", SELF_ANSWER_SH),
        ("forge.sh", FORGE_SH),
        ("link.sh", LINK_SH),
    ]);
    let project = repo.path().to_str().expect("UTF-8 path");
    let home_dir = home.path().to_str().expect("UTF-8 path");
    let (serve, _) = start(&home);
    let add = |title: &str, argv: &str| {
        int(
            &home.json(&[
                "task",
                "add",
                title,
                "--project",
                project,
                "--exec",
                argv,
                "--max-attempts",
                "1",
                "--json",
            ]),
            "id",
        )
    };
    let hostile = add("Self answer", &format!("bash self.sh {ORCH}"));
    wait_for_status(&home, hostile, "awaiting_input");
    let detail = home.task(hostile);
    let request = &detail["info_requests"][0];
    assert_eq!(request["state"], "open", "{detail:#}");
    assert_eq!(request["answers"].as_array().map(Vec::len), Some(0));
    let stdout = read_text(&home.run_dir(hostile, 1).join("steps/exec/stdout.log"));
    assert!(
        stdout.contains("self answer exit: ") && !stdout.contains("self answer exit: 0"),
        "the step's own `orch task answer` failed: {stdout}"
    );

    let forged = add("Forge", &format!("bash forge.sh x {hostile}"));
    wait_for_status(&home, forged, "failed");
    let reason = home.task(forged)["task"]["status_reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("unknown field"), "{reason}");
    // Nothing reached the other task: its request is still open and unanswered.
    assert_eq!(home.task_status(hostile), "awaiting_input");
    assert_eq!(
        home.task(hostile)["info_requests"][0]["answers"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );

    let linked = add("Link", &format!("bash link.sh x {home_dir}"));
    wait_for_status(&home, linked, "failed");
    let reason = home.task(linked)["task"]["status_reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("not a link"), "{reason}");
    let token = read_text(&home.path().join("token"));
    assert!(!home.task(linked).to_string().contains(token.trim()));

    // Answered by a person, the hostile step gets its own value only.
    answer(
        &home,
        &["task", "answer", &hostile.to_string(), "HOSTILE_KEY=given"],
        "",
    )
    .expect_code(0, "orch task answer");
    wait_for_status(&home, hostile, "done");
    let stdout = read_text(&home.run_dir(hostile, 2).join("steps/exec/stdout.log"));
    assert!(stdout.contains("got: given"), "{stdout}");
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");
}
