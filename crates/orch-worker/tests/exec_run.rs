//! The process runner on real processes: timeouts and cancellation stop the whole process group
//! (grandchildren included), output is captured byte for byte through the redactor under a cap,
//! the environment is cleared down to an allowlist, and a program that cannot start says which.

mod support_exec;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use orch_worker::exec::{self, ExecError, ExecPolicy};
use orch_worker::redact::Redactor;
use sha2::{Digest, Sha256};
use support_exec::{
    command, policy, process_is_gone, read_pid, run, run_with_cancel, wait_until, TestWorkspace,
};
use tokio_util::sync::CancellationToken;

/// Starts a grandchild that would sleep for 1000 s, writes its pid, and waits for it.
const SLEEP_WITH_GRANDCHILD: &str = "sleep 1000 & echo $! > grandchild.pid; wait";

/// Limit for things that take milliseconds when all is well.
const PATIENCE: Duration = Duration::from_secs(10);

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn a_command_that_outlives_its_timeout_is_killed_with_its_grandchild() {
    let workspace = TestWorkspace::new();
    let mut sleeper = command(&["sh", "-c", SLEEP_WITH_GRANDCHILD]);
    sleeper.timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let record = tokio::time::timeout(PATIENCE, run(&workspace, "sleeper", &sleeper, &policy()))
        .await
        .expect("the command is stopped at its timeout, not after 1000 s");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(record.exit.timed_out && !record.exit.cancelled && !record.exit.success());
    assert_eq!(record.exit.code, None);
    assert_eq!(record.exit.signal, Some(Signal::SIGTERM as i32));
    let grandchild = read_pid(&workspace.path("grandchild.pid"));
    wait_until(PATIENCE, "the grandchild is gone", || {
        process_is_gone(grandchild)
    })
    .await;
}

#[tokio::test]
async fn the_policy_default_timeout_applies_to_a_command_without_its_own() {
    let workspace = TestWorkspace::new();
    let sleeper = command(&["sleep", "1000"]);
    let policy = ExecPolicy {
        default_timeout: Some(Duration::from_millis(200)),
        ..policy()
    };
    let record = tokio::time::timeout(PATIENCE, run(&workspace, "sleeper", &sleeper, &policy))
        .await
        .expect("the default timeout stops the command");
    assert!(record.exit.timed_out);
}

#[tokio::test]
async fn a_group_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let workspace = TestWorkspace::new();
    // `trap '' TERM` makes the shell and the sleep it starts ignore SIGTERM.
    let mut stubborn = command(&[
        "sh",
        "-c",
        &format!("trap '' TERM; {SLEEP_WITH_GRANDCHILD}"),
    ]);
    stubborn.timeout = Some(Duration::from_millis(200));
    let policy = ExecPolicy {
        kill_grace: Duration::from_millis(400),
        ..policy()
    };
    let started = Instant::now();
    let record = tokio::time::timeout(PATIENCE, run(&workspace, "stubborn", &stubborn, &policy))
        .await
        .expect("SIGKILL follows the grace period");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "SIGKILL came before the grace period was over"
    );
    assert!(record.exit.timed_out);
    assert_eq!(record.exit.signal, Some(Signal::SIGKILL as i32));
    let grandchild = read_pid(&workspace.path("grandchild.pid"));
    wait_until(PATIENCE, "the grandchild is gone", || {
        process_is_gone(grandchild)
    })
    .await;
}

#[tokio::test]
async fn cancellation_stops_the_command_and_its_grandchild() {
    let workspace = TestWorkspace::new();
    let sleeper = command(&["sh", "-c", SLEEP_WITH_GRANDCHILD]);
    let pid_file = workspace.path("grandchild.pid");
    let cancel = CancellationToken::new();
    let policy = policy();
    let running = run_with_cancel(&workspace, "sleeper", &sleeper, &policy, cancel.clone());
    // Cancel once the grandchild runs, so that there is a grandchild to stop.
    let canceller = async {
        wait_until(PATIENCE, "the command wrote its grandchild's pid", || {
            std::fs::read_to_string(&pid_file).is_ok_and(|text| text.ends_with('\n'))
        })
        .await;
        cancel.cancel();
    };
    let (record, ()) = tokio::time::timeout(PATIENCE, async { tokio::join!(running, canceller) })
        .await
        .expect("the command stops when cancelled");
    assert!(record.exit.cancelled && !record.exit.timed_out && !record.exit.success());
    let grandchild = read_pid(&pid_file);
    wait_until(PATIENCE, "the grandchild is gone", || {
        process_is_gone(grandchild)
    })
    .await;
}

#[tokio::test]
async fn a_command_that_exits_at_once_leaving_a_grandchild_returns_and_the_grandchild_is_gone() {
    let workspace = TestWorkspace::new();
    // The grandchild keeps the output pipes open; the runner must not wait for it.
    let leaver = command(&[
        "sh",
        "-c",
        "sleep 1000 & echo $! > grandchild.pid; echo started",
    ]);
    let record = tokio::time::timeout(PATIENCE, run(&workspace, "leaver", &leaver, &policy()))
        .await
        .expect("the runner returns although a grandchild held the pipes");
    assert!(record.exit.success(), "{:?}", record.exit);
    assert_eq!(
        std::fs::read(&record.stdout.path).expect("read stdout"),
        b"started\n"
    );
    let grandchild = read_pid(&workspace.path("grandchild.pid"));
    wait_until(PATIENCE, "the grandchild is gone", || {
        process_is_gone(grandchild)
    })
    .await;
}

#[tokio::test]
async fn stdout_stderr_exit_code_and_the_rest_of_the_record_are_kept() {
    let workspace = TestWorkspace::new();
    std::fs::create_dir(workspace.path("sub")).expect("create sub");
    let mut talker = command(&["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"]);
    talker.cwd = Some("sub/.".to_owned());
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let record = run(&workspace, "talker", &talker, &policy()).await;
    assert_eq!(record.exit.code, Some(3));
    assert_eq!(record.exit.signal, None);
    assert!(!record.exit.success());
    assert_eq!(record.argv, talker.argv);
    assert_eq!(record.cwd, workspace.path("sub"));
    assert!(
        i128::from(record.started_at_ms) >= before as i128
            && record.started_at_ms <= record.ended_at_ms
    );
    let outputs = workspace.outputs("talker");
    assert_eq!(record.stdout.path, outputs.stdout);
    assert_eq!(record.stderr.path, outputs.stderr);
    for (stream, text) in [
        (&record.stdout, "to-stdout\n"),
        (&record.stderr, "to-stderr\n"),
    ] {
        assert_eq!(
            std::fs::read_to_string(&stream.path).expect("read output"),
            text
        );
        assert_eq!(
            (stream.bytes_seen, stream.bytes_kept, stream.truncated),
            (10, 10, false)
        );
        assert_eq!(stream.sha256, sha256_hex(text.as_bytes()));
    }
    let mut sorted = record.env_names.clone();
    sorted.sort();
    assert_eq!(record.env_names, sorted);
}

#[tokio::test]
async fn output_that_is_not_utf8_is_stored_byte_for_byte() {
    let workspace = TestWorkspace::new();
    let mut binary: Vec<u8> = (0..=255u8).cycle().take(256 * 64).collect();
    binary.extend_from_slice(b"\xff\xfe\x00\xc3\x28 invalid utf-8\n\x80");
    workspace.write("binary", &binary);
    let record = run(&workspace, "cat", &command(&["cat", "binary"]), &policy()).await;
    assert!(record.exit.success());
    assert_eq!(
        std::fs::read(&record.stdout.path).expect("read stdout"),
        binary
    );
    assert_eq!(record.stdout.bytes_seen, binary.len() as u64);
    assert_eq!(record.stdout.bytes_kept, binary.len() as u64);
    assert_eq!(record.stdout.sha256, sha256_hex(&binary));

    let record = run(
        &workspace,
        "printf",
        &command(&["printf", "\\000\\377\\376"]),
        &policy(),
    )
    .await;
    assert_eq!(
        std::fs::read(&record.stdout.path).expect("read stdout"),
        b"\x00\xff\xfe"
    );
}

#[tokio::test]
async fn output_past_the_cap_is_counted_dropped_and_noted_at_the_end_of_the_file() {
    let workspace = TestWorkspace::new();
    let policy = ExecPolicy {
        output_cap_bytes: 1000,
        ..policy()
    };
    let record = run(
        &workspace,
        "zeros",
        &command(&["head", "-c", "10000", "/dev/zero"]),
        &policy,
    )
    .await;
    assert!(record.exit.success());
    let mut expected = vec![0; 1000];
    expected
        .extend_from_slice(b"\n[orch: output truncated after 1000 bytes; 9000 bytes dropped]\n");
    assert_eq!(
        std::fs::read(&record.stdout.path).expect("read stdout"),
        expected
    );
    assert_eq!(
        (
            record.stdout.bytes_seen,
            record.stdout.bytes_kept,
            record.stdout.truncated
        ),
        (10_000, 1000, true)
    );
    assert_eq!(record.stdout.sha256, sha256_hex(&expected));
    assert!(!record.stderr.truncated);
}

#[tokio::test]
async fn secrets_in_output_are_redacted_before_they_are_stored_and_counted() {
    let workspace = TestWorkspace::new();
    let secret = "hunter2-correct-horse";
    let redactor = Redactor::new(&[secret.to_owned()]);
    let echo = command(&[
        "sh",
        "-c",
        &format!("echo token={secret}; echo {secret} >&2"),
    ]);
    let record = exec::run_command(
        &echo,
        &workspace.root,
        &workspace.outputs("echo"),
        &BTreeMap::new(),
        &redactor,
        &policy(),
        CancellationToken::new(),
    )
    .await
    .expect("the command starts");
    for path in [&record.stdout.path, &record.stderr.path] {
        let stored = std::fs::read_to_string(path).expect("read output");
        assert!(
            !stored.contains(secret),
            "the secret was stored: {stored:?}"
        );
    }
    assert_eq!(
        record.redactions.values().sum::<u64>(),
        2,
        "{:?}",
        record.redactions
    );
}

#[tokio::test]
async fn the_environment_is_cleared_down_to_the_allowlist_and_the_given_variables() {
    let workspace = TestWorkspace::new();
    // Two variables that the test process has (cargo sets several), neither passed by default.
    let inherited: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(name, _)| {
            !["PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER"].contains(&name.as_str())
        })
        .take(2)
        .collect();
    let [(allowed_name, allowed_value), (hidden_name, _)] = inherited.as_slice() else {
        panic!("the test needs two variables besides the default ones: {inherited:?}");
    };
    let policy = ExecPolicy {
        env_allowlist: vec![allowed_name.clone()],
        ..policy()
    };
    let extra_env = BTreeMap::from([
        ("ORCH_TASK".to_owned(), "task-1".to_owned()),
        ("OVERRIDDEN".to_owned(), "by orch".to_owned()),
    ]);
    let mut printer = command(&["env", "-0"]);
    printer.env = BTreeMap::from([("OVERRIDDEN".to_owned(), "by the command".to_owned())]);
    let record = exec::run_command(
        &printer,
        &workspace.root,
        &workspace.outputs("env"),
        &extra_env,
        &Redactor::new(&[]),
        &policy,
        CancellationToken::new(),
    )
    .await
    .expect("env starts");
    let printed = std::fs::read(&record.stdout.path).expect("read stdout");
    let env: BTreeMap<String, String> = printed
        .split(|byte| *byte == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (name, value) = entry.split_once('=').expect("NAME=value");
            (name.to_owned(), value.to_owned())
        })
        .collect();
    assert_eq!(
        env.get(allowed_name),
        Some(allowed_value),
        "the allowlisted variable is passed through"
    );
    assert!(
        !env.contains_key(hidden_name),
        "{hidden_name} is not in the allowlist but was passed"
    );
    assert_eq!(env.get("ORCH_TASK").map(String::as_str), Some("task-1"));
    assert_eq!(
        env.get("OVERRIDDEN").map(String::as_str),
        Some("by the command")
    );
    assert!(env.contains_key("PATH"));
    assert_eq!(
        record.env_names,
        env.keys().cloned().collect::<Vec<_>>(),
        "the record names exactly what it got"
    );
}

#[tokio::test]
async fn a_program_that_cannot_start_is_named_in_the_error() {
    let workspace = TestWorkspace::new();
    let missing = command(&["orch-test-no-such-program", "--flag"]);
    let error = exec::run_command(
        &missing,
        &workspace.root,
        &workspace.outputs("missing"),
        &BTreeMap::new(),
        &Redactor::new(&[]),
        &policy(),
        CancellationToken::new(),
    )
    .await
    .expect_err("a missing program cannot start");
    let ExecError::Spawn { program, .. } = &error else {
        panic!("not a spawn error: {error:?}");
    };
    assert_eq!(program, "orch-test-no-such-program");
    let message = error.to_string();
    assert!(
        message.starts_with("could not start `orch-test-no-such-program`: "),
        "{message}"
    );
    assert!(message.contains("installed and on the PATH"), "{message}");
}

#[tokio::test]
async fn a_working_directory_that_does_not_exist_is_an_error_naming_it() {
    let workspace = TestWorkspace::new();
    let mut lost = command(&["true"]);
    lost.cwd = Some("no-such-dir".to_owned());
    let error = exec::run_command(
        &lost,
        &workspace.root,
        &workspace.outputs("lost"),
        &BTreeMap::new(),
        &Redactor::new(&[]),
        &policy(),
        CancellationToken::new(),
    )
    .await
    .expect_err("the command cannot start in a missing directory");
    let message = workspace.display(&error.to_string());
    assert_eq!(
        message,
        "could not start `true`: its working directory $WS/no-such-dir is not a directory"
    );
}
