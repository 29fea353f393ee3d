//! The CLI as a client: with `orch serve` running for the home (or `--server` naming it), task
//! commands, `run` and `status` go through the HTTP API and print the same JSON as the store
//! path; a daemon that is gone (even leaving `serve.addr` behind) sends them back to the store.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::{int, poll_until, Home, Process, COMMAND_DEADLINE, SERVE_DEADLINE};

/// Start `orch serve --workers 0` with its API and return it with its base URL.
fn serve(home: &Home) -> (Process, String) {
    let serve = home.serve(&["--workers", "0"]);
    let addr = poll_until("serve.addr and token", SERVE_DEADLINE, || {
        let addr = std::fs::read_to_string(home.path().join("serve.addr")).ok()?;
        home.path().join("token").exists().then_some(())?;
        Some(addr.trim().to_owned()).filter(|a| !a.is_empty())
    });
    (serve, format!("http://{addr}"))
}

/// The actors of a task's events (`api` for requests through the daemon, `cli` for the store).
fn actors(task: &Value) -> Vec<String> {
    task["events"]
        .as_array()
        .expect("events are a list")
        .iter()
        .map(|e| e["actor"].as_str().expect("an actor").to_owned())
        .collect()
}

/// The JSON every read command prints for the home, in a fixed order.
fn reads(home: &Home, extra: &[&str], ids: &[i64]) -> Vec<Value> {
    let mut all = vec![
        vec!["task", "list", "--json"],
        vec!["task", "list", "--status", "cancelled", "--json"],
        vec!["status", "--json"],
    ];
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    for id in &ids {
        all.push(vec!["task", "get", id, "--json"]);
    }
    all.into_iter()
        .map(|mut args| {
            args.extend_from_slice(extra);
            home.json(&args)
        })
        .collect()
}

fn workflow(home: &Home) -> String {
    let yaml = "name: client\ntasks:\n  - id: first\n    title: First\n    steps:\n      - name: hello\n        exec:\n          - argv: [echo, hello]\n  - id: second\n    title: Second\n    needs: [first]\n";
    home.write("client.yml", yaml).display().to_string()
}

#[test]
fn every_client_command_gives_the_same_json_through_the_daemon_as_from_the_store() {
    let home = Home::new();
    let (daemon, server) = serve(&home);
    let project = home
        .path()
        .to_str()
        .expect("temp paths are UTF-8")
        .to_owned();

    // Writes through the daemon of the home (found through serve.addr).
    let added = home.json(&["task", "add", "Through the API", "--exec", "true", "--json"]);
    let first = int(&added, "id");
    let approval = home.json(&[
        "task",
        "add",
        "Needs approval",
        "--requires-approval",
        "--json",
    ]);
    let second = int(&approval, "id");
    let file = workflow(&home);
    let submitted = home.json(&["run", &file, "--project", &project, "--json"]);
    assert_eq!(submitted["tasks"].as_array().map(Vec::len), Some(2));
    let approved = home.json(&["task", "approve", &second.to_string(), "--json"]);
    assert_eq!(approved["id"], second);
    let cancelled = home.json(&["task", "cancel", &first.to_string(), "--json"]);
    assert_eq!(cancelled["status"], "cancelled");
    let unblocked = home.run(&["task", "unblock", &first.to_string(), "--json"]);
    unblocked.expect_code(1, "unblocking a cancelled task");
    let retried = home.json(&["task", "retry", &first.to_string(), "--json"]);
    assert_eq!(retried["status"], "queued");
    let recancelled = home.json(&[
        "task",
        "cancel",
        &first.to_string(),
        "--server",
        &server,
        "--json",
    ]);
    assert_eq!(recancelled["status"], "cancelled");
    // Every change was made by the daemon, so its events name the API as the actor.
    let detail = home.task(first);
    assert_eq!(
        actors(&detail),
        ["api", "api", "api", "api"],
        "create, cancel, retry, cancel through the API"
    );

    let ids = [first, second, int(&submitted["tasks"][0], "id")];
    let through_home_daemon = reads(&home, &[], &ids);
    let through_server = reads(&home, &["--server", &server], &ids);
    assert_eq!(through_home_daemon, through_server);

    // With the daemon stopped, the same commands read the store and print the same JSON.
    daemon.signal(Signal::SIGTERM);
    daemon
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");
    assert!(
        !home.path().join("serve.addr").exists(),
        "serve.addr is removed at exit"
    );
    let from_store = reads(&home, &[], &ids);
    assert_eq!(through_home_daemon, from_store);

    // A store-path change is recorded with the CLI as its actor.
    home.json(&["task", "retry", &first.to_string(), "--json"]);
    assert_eq!(
        actors(&home.task(first)).last().map(String::as_str),
        Some("cli")
    );
}

#[test]
fn api_errors_exit_like_the_store_path_and_a_wrong_token_says_where_it_came_from() {
    let home = Home::new();
    let (_daemon, server) = serve(&home);

    let missing = home.run(&["task", "get", "999", "--json"]);
    missing.expect_code(2, "getting a task that does not exist through the API");
    assert!(missing.stderr.contains("999"), "{}", missing.stderr);

    let added = home.json(&["task", "add", "Cancelled twice", "--json"]);
    let id = int(&added, "id").to_string();
    home.json(&["task", "cancel", &id, "--json"]);
    let again = home.run(&["task", "cancel", &id, "--server", &server]);
    again.expect_code(1, "cancelling a finished task through the API");
    assert!(again.stderr.contains("cancelled"), "{}", again.stderr);

    let wrong = home
        .spawn_with_env(
            &["task", "list", "--server", &server],
            &[("ORCH_TOKEN", "wrong")],
        )
        .finish(COMMAND_DEADLINE);
    wrong.expect_code(2, "a wrong token");
    assert!(
        wrong.stderr.contains("refused the token from ORCH_TOKEN"),
        "{}",
        wrong.stderr
    );

    // A token file others can read is refused; one only its owner reads is used.
    let file = home.write("wrong-token", "wrong\n");
    let file_arg = file.to_str().expect("temp paths are UTF-8");
    let open = home.run(&[
        "task",
        "list",
        "--server",
        &server,
        "--token-file",
        file_arg,
    ]);
    open.expect_code(2, "a token file others can read");
    assert!(open.stderr.contains("chmod 600"), "{}", open.stderr);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let wrong = home.run(&[
        "task",
        "list",
        "--server",
        &server,
        "--token-file",
        file_arg,
    ]);
    wrong.expect_code(2, "a wrong token from a file");
    assert!(
        wrong
            .stderr
            .contains(&format!("refused the token from --token-file {file_arg}")),
        "{}",
        wrong.stderr
    );

    // A token on the command line (readable by every local user) is refused before it is used,
    // for client commands and for `orch worker` alike.
    for args in [
        vec![
            "task",
            "list",
            "--server",
            &server,
            "--token",
            "secret-on-the-command-line",
        ],
        vec![
            "worker",
            "--server",
            &server,
            "--name",
            "w",
            "--token",
            "secret-on-the-command-line",
        ],
    ] {
        let refused = home.run(&args);
        refused.expect_code(2, "a token on the command line");
        assert!(
            refused.stderr.contains("--token-file"),
            "{}",
            refused.stderr
        );
        assert!(
            !refused.stderr.contains("secret-on-the"),
            "{}",
            refused.stderr
        );
    }
}

#[test]
fn a_stale_serve_addr_left_by_a_killed_daemon_falls_back_to_the_store() {
    let home = Home::new();
    let (daemon, _server) = serve(&home);
    home.json(&["task", "add", "Before the kill", "--json"]);
    let killed = daemon.kill();
    assert_eq!(killed.code, None, "killed by SIGKILL\n{}", killed.stderr);
    assert!(
        home.path().join("serve.addr").exists(),
        "SIGKILL leaves serve.addr behind"
    );

    let added = home.json(&["task", "add", "After the kill", "--json"]);
    let listed = home.json(&["task", "list", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    let detail = home.task(int(&added, "id"));
    assert_eq!(actors(&detail), ["cli"], "added through the store");
}

#[test]
fn server_pointing_at_a_closed_port_fails_with_a_clear_message() {
    let home = Home::new();
    // Bind and drop a listener: its port is then very likely closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let server = format!("http://127.0.0.1:{port}");
    home.write("token", "some-token\n");
    let failed = home.run(&["status", "--server", &server]);
    failed.expect_code(1, "--server to a closed port");
    assert!(
        failed
            .stderr
            .contains(&format!("cannot reach the orch daemon at {server}")),
        "{}",
        failed.stderr
    );
    assert!(
        !Path::new(&home.database()).exists(),
        "the store was not touched"
    );
}

#[test]
fn cancel_with_a_reason_retry_with_a_delay_and_list_by_project_go_through_the_api() {
    let home = Home::new();
    let (_daemon, server) = serve(&home);
    let project = home
        .path()
        .to_str()
        .expect("temp paths are UTF-8")
        .to_owned();
    let added = home.json(&["task", "add", "Steered remotely", "--json"]);
    let id = int(&added, "id").to_string();

    let cancelled = home.json(&[
        "task",
        "cancel",
        &id,
        "--reason",
        "superseded by #7",
        "--server",
        &server,
        "--json",
    ]);
    assert_eq!(cancelled["status"], "cancelled");
    let task = home.task(int(&added, "id"));
    assert_eq!(
        task["task"]["status_reason"], "superseded by #7",
        "{task:#}"
    );
    let retried = home.json(&[
        "task", "retry", &id, "--delay", "1h", "--server", &server, "--json",
    ]);
    assert_eq!(retried["status"], "retry_wait");
    let task = home.task(int(&added, "id"));
    assert!(task["task"]["not_before"].is_string(), "{task:#}");
    assert_eq!(actors(&task), ["api", "api", "api"], "{task:#}");

    for wanted in [project.as_str(), "."] {
        let listed = home.json(&[
            "task",
            "list",
            "--project",
            wanted,
            "--server",
            &server,
            "--json",
        ]);
        assert_eq!(
            listed.as_array().map(Vec::len),
            Some(1),
            "{wanted}: {listed}"
        );
    }
    let unknown = home.run(&["task", "list", "--project", "nowhere", "--server", &server]);
    unknown.expect_code(2, "an unknown project");
    assert!(unknown.stderr.contains("nowhere"), "{}", unknown.stderr);
}

/// `value` read as the API type `T`, after dropping the keys the CLI adds to it (`drop`): it
/// must read, and read back to the very same JSON (no field missing from the type, none renamed
/// or extra in the CLI's output).
fn as_api<T: serde::de::DeserializeOwned + serde::Serialize>(
    what: &str,
    value: &Value,
    drop: &[&str],
) -> T {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        for key in drop {
            assert!(
                object.remove(*key).is_some(),
                "{what}: no `{key}` in {value:#}"
            );
        }
    }
    let typed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{what} is not its orch-api type: {e}\n{value:#}"));
    let back = serde_json::to_value(&typed).expect("serialize");
    assert_eq!(
        back, value,
        "{what}: the JSON differs from its orch-api type's"
    );
    typed
}

/// The CLI's `--json` output is the `orch-api` types, by the store path and through the daemon
/// alike: a field renamed on either side fails here (and the shared types fail the build).
#[test]
fn cli_json_output_reads_as_the_orch_api_types_from_the_store_and_through_the_daemon() {
    let home = Home::new();
    let project = home
        .path()
        .to_str()
        .expect("temp paths are UTF-8")
        .to_owned();
    let file = workflow(&home);
    let mut daemon = None;
    for (round, path) in [(1u64, "store"), (2, "api")] {
        if path == "api" {
            daemon = Some(serve(&home));
        }
        let added: orch_api::CreatedTask = as_api(
            &format!("{path}: task add"),
            &home.json(&["task", "add", "Typed", "--exec", "true", "--json"]),
            &[],
        );
        let id = added.task.id.to_string();
        let submitted: orch_api::WorkflowView = as_api(
            &format!("{path}: run"),
            &home.json(&["run", &file, "--project", &project, "--json"]),
            &[],
        );
        assert_eq!(submitted.tasks.len(), 2, "{path}");
        let listed: Vec<orch_api::TaskView> = as_api(
            &format!("{path}: task list"),
            &home.json(&["task", "list", "--json"]),
            &[],
        );
        assert!(listed.iter().any(|t| t.id == added.task.id), "{path}");
        let cancelled: orch_api::StatusChange = as_api(
            &format!("{path}: task cancel"),
            &home.json(&["task", "cancel", &id, "--json"]),
            &[],
        );
        assert_eq!(cancelled.status, "cancelled", "{path}");
        let detail: orch_api::TaskDetail = as_api(
            &format!("{path}: task get"),
            &home.json(&["task", "get", &id, "--json"]),
            &["usage", "info_requests"],
        );
        assert_eq!(detail.task.status, "cancelled", "{path}");
        assert!(!detail.events.is_empty(), "{path}");
        let counts: orch_api::StatusCounts = as_api(
            &format!("{path}: status"),
            &home.json(&["status", "--json"]),
            &["usage"],
        );
        assert_eq!(
            counts.by_status.get("cancelled").copied(),
            Some(round),
            "{path}"
        );
    }
    drop(daemon);
}
