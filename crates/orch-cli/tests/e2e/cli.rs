//! The everyday commands with `--json`, and the exit codes: 0 ok, 1 the operation failed,
//! 2 the input (a file, a flag, an id) is wrong.

use serde_json::{json, Value};

use crate::support::{events_named, int, Home};

fn kinds(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("`events` is a list")
        .iter()
        .map(|e| e["kind"].as_str().expect("kinds are text").to_owned())
        .collect()
}

#[test]
fn version_prints_the_name_and_the_crate_version_as_json() {
    let home = Home::new();
    let version = home.json(&["version", "--json"]);
    assert_eq!(
        version,
        json!({ "name": "orch", "version": env!("CARGO_PKG_VERSION") })
    );
}

#[test]
fn a_postgres_database_that_cannot_be_reached_is_reported_clearly_and_others_are_config_errors() {
    let home = Home::new();
    // Port 1 on loopback: nothing listens there.
    let finished = home
        .command(&["task", "list", "--json"])
        .env(
            "ORCH_DATABASE_URL",
            "postgres://orch:secret@127.0.0.1:1/orch",
        )
        .output()
        .expect("run orch");
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert_eq!(finished.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot get a connection to PostgreSQL"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret"),
        "the URL's password is not printed: {stderr}"
    );
    let finished = home
        .command(&["task", "list", "--json"])
        .env("ORCH_DATABASE_URL", "mysql://x")
        .output()
        .expect("run orch");
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert_eq!(finished.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ORCH_DATABASE_URL is not a database URL orch knows (scheme `mysql`)"),
        "{stderr}"
    );
    // An SQLite URL must name an absolute file.
    let finished = home
        .command(&["--database", "sqlite://orch.db", "task", "list"])
        .output()
        .expect("run orch");
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert!(
        stderr.contains("--database: an SQLite URL names an absolute file"),
        "{stderr}"
    );
}

#[test]
fn the_database_comes_from_the_flag_over_the_environment_over_the_config_file() {
    let home = Home::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let shared = |name: &str| dir.path().join(name);
    let url = |name: &str| format!("sqlite://{}", shared(name).display());
    // The config file's `database` is used when nothing else names one (and the worker's
    // project settings, which read the same file, accept the key).
    std::fs::write(
        home.path().join("config.toml"),
        format!("database = \"{}\"\n", url("from-config.db")),
    )
    .expect("write config.toml");
    home.json(&["task", "add", "one", "--json"]);
    assert!(shared("from-config.db").exists());
    assert!(
        !home.database().exists(),
        "the home's own orch.db is not used"
    );
    // The environment beats the config file, the flag beats both.
    let finished = home
        .command(&["task", "add", "two"])
        .env("ORCH_DATABASE_URL", url("from-env.db"))
        .output()
        .expect("run orch");
    assert!(finished.status.success(), "{finished:?}");
    let finished = home
        .command(&["--database", &url("from-flag.db"), "task", "add", "three"])
        .env("ORCH_DATABASE_URL", url("from-env.db"))
        .output()
        .expect("run orch");
    assert!(finished.status.success(), "{finished:?}");
    for (db, title) in [
        ("from-config.db", "one"),
        ("from-env.db", "two"),
        ("from-flag.db", "three"),
    ] {
        let finished = home
            .command(&["--database", &url(db), "task", "list", "--json"])
            .output()
            .expect("run orch");
        let list: serde_json::Value =
            serde_json::from_slice(&finished.stdout).expect("task list --json");
        let titles: Vec<_> = list
            .as_array()
            .expect("a list")
            .iter()
            .map(|t| t["title"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(titles, vec![title.to_owned()], "{db}");
    }
    assert!(
        home.command(&["doctor"])
            .output()
            .expect("run orch")
            .status
            .success(),
        "doctor is clean on the configured database"
    );
}

#[test]
fn a_task_can_be_added_listed_inspected_cancelled_and_retried_with_json_output() {
    let home = Home::new();
    let added = home.json(&[
        "task",
        "add",
        "write the docs",
        "--max-attempts",
        "5",
        "--json",
    ]);
    let id = int(&added, "id");
    assert_eq!(added["title"], "write the docs");
    assert_eq!(added["status"], "queued");
    assert_eq!(added["max_attempts"], 5);
    assert_eq!(added["attempts_used"], 0);

    let second = home.json(&["task", "add", "review the docs", "--json"]);
    let second_id = int(&second, "id");
    assert!(second_id > id, "ids grow: {id} then {second_id}");

    let listed = home.json(&["task", "list", "--json"]);
    let listed_ids: Vec<i64> = listed
        .as_array()
        .expect("`task list --json` prints a list")
        .iter()
        .map(|t| int(t, "id"))
        .collect();
    assert_eq!(listed_ids, vec![second_id, id], "newest first");

    let got = home.json(&["task", "get", &id.to_string(), "--json"]);
    assert_eq!(got["task"]["id"], id);
    assert_eq!(got["task"]["status"], "queued");
    assert_eq!(got["runs"], json!([]));
    assert_eq!(kinds(&got["events"]), ["create"]);
    assert_eq!(got["events"][0]["to"], "queued");

    let cancelled = home.json(&[
        "task",
        "cancel",
        &id.to_string(),
        "--reason",
        "not needed",
        "--json",
    ]);
    assert_eq!(cancelled, json!({ "id": id, "status": "cancelled" }));
    let cancelled_only = home.json(&["task", "list", "--status", "cancelled", "--json"]);
    assert_eq!(cancelled_only.as_array().map(Vec::len), Some(1));
    assert_eq!(cancelled_only[0]["id"], id);

    let retried = home.json(&["task", "retry", &id.to_string(), "--json"]);
    assert_eq!(retried, json!({ "id": id, "status": "queued" }));
    let got = home.json(&["task", "get", &id.to_string(), "--json"]);
    assert_eq!(kinds(&got["events"]), ["create", "cancel", "retry"]);
    let cancel = &got["events"][1];
    assert_eq!(
        (&cancel["from"], &cancel["to"], &cancel["reason"]),
        (&json!("queued"), &json!("cancelled"), &json!("not needed"))
    );

    let (total, by_status) = home.status_counts();
    assert_eq!(total, 2);
    assert_eq!(by_status["queued"], 2);
    assert_eq!(by_status["cancelled"], 0);
    home.assert_consistent("after add, cancel and retry");
}

#[test]
fn retrying_a_cancelled_dependency_lifts_the_block_by_itself() {
    let home = Home::new();
    let first = int(&home.json(&["task", "add", "first", "--json"]), "id");
    let second = home.json(&[
        "task",
        "add",
        "second",
        "--needs",
        &first.to_string(),
        "--json",
    ]);
    let second_id = int(&second, "id");
    assert_eq!(second["status"], "waiting");
    assert_eq!(second["needs"], json!([first]));

    home.json(&["task", "cancel", &first.to_string(), "--json"]);
    let blocked = home.json(&["task", "get", &second_id.to_string(), "--json"]);
    assert_eq!(blocked["task"]["status"], "blocked");
    let reason = blocked["task"]["status_reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains(&format!("dependency {first}")),
        "the reason names the blocking dependency: {reason}"
    );

    home.json(&["task", "retry", &first.to_string(), "--json"]);
    let waiting = home.json(&["task", "get", &second_id.to_string(), "--json"]);
    assert_eq!(waiting["task"]["status"], "waiting");
    assert_eq!(
        kinds(&waiting["events"]),
        ["create", "block", "dep_wait"],
        "the block and its end are both in the event log"
    );
    let not_blocked = home.run(&["task", "unblock", &second_id.to_string(), "--json"]);
    not_blocked.expect_code(1, "unblock a task that is not blocked");
    assert!(
        not_blocked.stderr.contains("only blocked tasks"),
        "{}",
        not_blocked.stderr
    );
    home.assert_consistent("after block and retry");
}

#[test]
fn unblock_goes_ahead_without_the_failed_dependency_and_says_so() {
    let home = Home::new();
    let first = int(&home.json(&["task", "add", "first", "--json"]), "id");
    let other = int(&home.json(&["task", "add", "other", "--json"]), "id");
    let second = int(
        &home.json(&[
            "task",
            "add",
            "second",
            "--needs",
            &first.to_string(),
            "--needs",
            &other.to_string(),
            "--json",
        ]),
        "id",
    );
    home.json(&["task", "cancel", &first.to_string(), "--json"]);
    let unblocked = home.json(&["task", "unblock", &second.to_string(), "--json"]);
    assert_eq!(
        unblocked["status"], "waiting",
        "it still waits for the dependency that did not fail"
    );
    let got = home.json(&["task", "get", &second.to_string(), "--json"]);
    let events = got["events"].as_array().expect("events");
    let last = events.last().expect("an unblock event");
    assert_eq!(last["kind"], "unblock");
    let reason = last["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("without dependencies {first}")),
        "{reason}"
    );
    // Retrying the waived dependency later does not block it again.
    home.json(&["task", "retry", &first.to_string(), "--json"]);
    home.json(&["task", "cancel", &first.to_string(), "--json"]);
    let still = home.json(&["task", "get", &second.to_string(), "--json"]);
    assert_eq!(still["task"]["status"], "waiting");
    home.assert_consistent("after unblock");
}

#[test]
fn a_workflow_file_is_submitted_with_its_dependencies_and_runs_in_order() {
    let home = Home::new();
    let file = home.write(
        "wf.yml",
        "name: pair\n\
         tasks:\n\
         \x20 - id: build\n\
         \x20   title: Build it\n\
         \x20   priority: 3\n\
         \x20 - id: ship\n\
         \x20   title: Ship it\n\
         \x20   needs: [build]\n",
    );
    let submitted = home.json(&["run", file.to_str().expect("UTF-8 path"), "--json"]);
    assert!(submitted["workflow"].is_i64(), "{submitted}");
    let tasks = submitted["tasks"].as_array().expect("`tasks` is a list");
    assert_eq!(tasks.len(), 2);
    assert_eq!(
        (&tasks[0]["key"], &tasks[0]["status"], &tasks[0]["priority"]),
        (&json!("build"), &json!("queued"), &json!(3))
    );
    assert_eq!(
        (&tasks[1]["key"], &tasks[1]["status"]),
        (&json!("ship"), &json!("waiting"))
    );
    assert_eq!(tasks[1]["needs"], json!([tasks[0]["id"]]));

    let worker = home.run(&["debug", "claim-loop", "--owner", "w", "--idle-polls", "1"]);
    worker.expect_code(0, "claim-loop over the workflow");
    let lines = worker.json_lines();
    let claimed: Vec<&Value> = events_named(&lines, "claimed")
        .into_iter()
        .map(|l| &l["task"])
        .collect();
    assert_eq!(
        claimed,
        [&tasks[0]["id"], &tasks[1]["id"]],
        "the dependency runs first"
    );
    let (_, by_status) = home.status_counts();
    assert_eq!(by_status["done"], 2);
    home.assert_consistent("after the workflow ran");
}

#[test]
fn a_bad_workflow_file_exits_2_naming_file_line_and_column_and_submits_nothing() {
    let home = Home::new();
    let unknown_need = home.write(
        "bad.yml",
        "tasks:\n  - id: a\n    title: A\n    needs: [zz]\n",
    );
    let finished = home.run(&["run", unknown_need.to_str().expect("UTF-8 path"), "--json"]);
    finished.expect_code(2, "a workflow whose `needs` names no task");
    let place = format!("{}:4:13:", unknown_need.display());
    assert!(
        finished.stderr.contains(&place) && finished.stderr.contains("zz"),
        "the message names {place} and the bad id: {}",
        finished.stderr
    );

    let unknown_key = home.write(
        "typo.yml",
        "tasks:\n  - id: a\n    title: A\n    bogus: 1\n",
    );
    let finished = home.run(&["run", unknown_key.to_str().expect("UTF-8 path")]);
    finished.expect_code(2, "a workflow with an unknown key");
    let place = format!("{}:4:5:", unknown_key.display());
    assert!(
        finished.stderr.contains(&place) && finished.stderr.contains("bogus"),
        "the message names {place} and the key: {}",
        finished.stderr
    );

    let missing = home.run(&["run", "no-such-file.yml"]);
    missing.expect_code(2, "a workflow file that does not exist");
    assert!(
        missing.stderr.contains("no-such-file.yml"),
        "{}",
        missing.stderr
    );

    let (total, _) = home.status_counts();
    assert_eq!(total, 0, "nothing was submitted");
}

#[test]
fn an_unknown_task_id_exits_2_for_every_command_that_takes_one() {
    let home = Home::new();
    home.json(&["task", "add", "the only task", "--json"]);
    for command in ["get", "cancel", "retry", "unblock", "approve"] {
        let finished = home.run(&["task", command, "999", "--json"]);
        finished.expect_code(2, &format!("task {command} 999"));
        assert!(
            finished.stderr.contains("task 999 does not exist"),
            "task {command}: {}",
            finished.stderr
        );
        assert!(
            finished.stdout.is_empty(),
            "task {command}: no JSON on error"
        );
    }
}

#[test]
fn cancelling_a_done_task_exits_1_and_leaves_it_done() {
    let home = Home::new();
    let id = int(&home.json(&["task", "add", "finish me", "--json"]), "id");
    home.run(&["debug", "claim-loop", "--owner", "w", "--max", "1"])
        .expect_code(0, "claim-loop --max 1");
    let finished = home.run(&["task", "cancel", &id.to_string(), "--json"]);
    finished.expect_code(1, "cancel a done task");
    assert!(
        finished.stderr.contains(&format!("task {id} is done")),
        "{}",
        finished.stderr
    );
    let got = home.json(&["task", "get", &id.to_string(), "--json"]);
    assert_eq!(got["task"]["status"], "done");
    assert_eq!(kinds(&got["events"]), ["create", "claim", "complete"]);
    assert_eq!(got["runs"][0]["state"], "succeeded");
    home.assert_consistent("after the refused cancel");
}

#[test]
fn adding_a_task_that_needs_a_missing_task_exits_2_and_adds_nothing() {
    let home = Home::new();
    home.json(&["task", "add", "exists", "--json"]);
    let finished = home.run(&["task", "add", "orphan", "--needs", "999", "--json"]);
    finished.expect_code(2, "task add --needs 999");
    assert!(
        finished.stderr.contains("--needs") && finished.stderr.contains("999"),
        "the message names the flag and the id: {}",
        finished.stderr
    );
    let listed = home.json(&["task", "list", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[test]
fn malformed_flags_exit_2() {
    let home = Home::new();
    let cases: [&[&str]; 4] = [
        &["task", "list", "--status", "sleeping"],
        &["task", "add", "zero tries", "--max-attempts", "0"],
        &["debug", "claim-loop", "--owner", "w", "--outcome", "maybe"],
        &["task", "frobnicate"],
    ];
    for args in cases {
        home.run(args)
            .expect_code(2, &format!("orch {}", args.join(" ")));
    }
}

#[test]
fn a_blocked_tasks_reason_follows_its_dependency_into_another_blocking_status() {
    let home = Home::new();
    let first = int(&home.json(&["task", "add", "first", "--json"]), "id");
    let second = int(
        &home.json(&[
            "task",
            "add",
            "second",
            "--needs",
            &first.to_string(),
            "--json",
        ]),
        "id",
    );
    home.run(&[
        "debug",
        "claim-loop",
        "--owner",
        "w",
        "--max",
        "1",
        "--outcome",
        "needs_review",
    ])
    .expect_code(0, "claim-loop --outcome needs_review");
    home.json(&["task", "cancel", &first.to_string(), "--json"]);
    let got = home.json(&["task", "get", &second.to_string(), "--json"]);
    assert_eq!(got["task"]["status"], "blocked");
    assert_eq!(
        got["task"]["status_reason"],
        format!("dependency {first} (`first`) is cancelled")
    );
    home.assert_consistent("after the dependency moved from needs_review to cancelled");
}
