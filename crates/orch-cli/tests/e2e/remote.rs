//! Remote workers: `orch serve` and `orch worker` processes with their own homes, speaking HTTP;
//! a worker killed with SIGKILL mid-step has its task finished by another; the daemon killed
//! with SIGKILL and restarted while remote steps run gets every result once, with its bundle.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::sys::signal::Signal;

use crate::support::{
    int, poll_until, process_is_alive, read_json, read_text, sha256_of, task_events, workspace_of,
    Home, Process, Repo, SERVE_DEADLINE,
};

/// Start a remote worker with its own home; the token comes from the environment.
pub(crate) fn worker(home: &Home, server: &str, token: &str, name: &str) -> Process {
    home.spawn_with_env(
        &[
            "worker", "--server", server, "--name", name, "--slots", "1", "--lease", "2s",
            "--grace", "1s",
        ],
        &[("ORCH_WORKER_TOKEN", token)],
    )
}

/// The address (`http://...`) and worker token of the daemon starting on `home`, once it
/// listens.
pub(crate) fn server_and_token(home: &Home) -> (String, String) {
    let addr = poll_until("serve.addr", SERVE_DEADLINE, || {
        Some(read_trimmed(&home.path().join("serve.addr"))).filter(|a| !a.is_empty())
    });
    let token = read_trimmed(&home.path().join("worker-token"));
    (format!("http://{addr}"), token)
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn two_remote_workers_finish_a_workflow_and_a_worker_killed_mid_step_has_its_task_finished_by_the_other(
) {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let yaml = "name: remote\ndefaults:\n  retry: {max_attempts: 3, backoff: 0s, max_backoff: 0s, jitter: 0s}\ntasks:\n  - id: slow\n    title: Slow step\n    priority: 10\n    steps:\n      - name: wait\n        exec:\n          - argv: [sleep, \"2\"]\n  - id: quick\n    title: Quick step\n    steps:\n      - name: hello\n        exec:\n          - argv: [echo, hello]\n  - id: after\n    title: After the slow one\n    needs: [slow]\n    steps:\n      - name: done\n        exec:\n          - argv: [echo, after]\n";
    let ids = home.submit("remote", yaml, repo.path());
    let serve = home.serve(&["--workers", "0", "--lease", "2s", "--grace", "1s"]);
    let (server, token) = server_and_token(&home);

    // The first worker takes the slow task (highest priority) and is killed mid-step.
    let alpha_home = Home::new();
    let alpha = worker(&alpha_home, &server, &token, "alpha");
    let slow = ids["slow"];
    let logs = alpha_home.run_dir(slow, 1).join("logs.txt");
    poll_until("`sleep 2` to start on alpha", SERVE_DEADLINE, || {
        std::fs::read_to_string(&logs)
            .ok()
            .filter(|text| text.contains("$ sleep 2"))
            .map(drop)
    });
    // Beta reads its token from a file only its owner can read.
    let beta_home = Home::new();
    let token_file = beta_home.write("worker-token", &token);
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let beta = beta_home.spawn(&[
        "worker",
        "--server",
        &server,
        "--token-file",
        token_file.to_str().unwrap(),
        "--name",
        "beta",
        "--slots",
        "1",
        "--lease",
        "2s",
        "--grace",
        "1s",
    ]);
    let killed = alpha.kill();
    assert_eq!(killed.code, None, "killed by the signal\n{}", killed.stderr);

    poll_until("every task to be done", SERVE_DEADLINE, || {
        ids.values()
            .all(|id| home.task_status(*id) == "done")
            .then_some(())
    });
    assert_eq!(home.tasks_completed_more_than_once(), vec![]);
    for (key, id) in &ids {
        let task = home.task(*id);
        assert_eq!(task_events(&task, "complete").len(), 1, "{key}: {task:#}");
    }
    // The slow task's first run (alpha's) was lost; beta ran it again and finished it.
    let task = home.task(slow);
    let runs: Vec<(i64, String, String)> = task["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                int(r, "attempt"),
                r["owner"].as_str().unwrap_or_default().to_owned(),
                r["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        runs,
        vec![
            (1, "alpha-1".to_owned(), "lost".to_owned()),
            (2, "beta-1".to_owned(), "succeeded".to_owned()),
        ],
        "{task:#}"
    );
    assert!(beta_home.run_dir(slow, 2).join("result.json").exists());
    // The daemon has the bundle too (uploaded before the completion), from its own home.
    let uploaded = read_json(&home.run_dir(slow, 2).join("result.json"));
    assert_eq!(uploaded["status"], "succeeded", "{uploaded:#}");
    assert!(read_text(&home.run_dir(slow, 2).join("logs.txt")).contains("$ sleep 2"));
    home.assert_consistent("after the remote workflow");

    beta.signal(Signal::SIGTERM);
    beta.finish(SERVE_DEADLINE)
        .expect_code(0, "orch worker after SIGTERM");
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");
}

/// The active runs of remote workers, from the daemon's database: (task, attempt, owner).
fn remote_runs(home: &Home, state: &str) -> Vec<(i64, i64, String)> {
    let pairs = home.query_pairs(&format!(
        "SELECT task_id, attempt FROM runs WHERE state = '{state}' AND owner NOT LIKE 'embedded-%' ORDER BY task_id"
    ));
    pairs
        .into_iter()
        .map(|(task, attempt)| {
            let owner = home.query_text(&format!(
                "SELECT owner FROM runs WHERE task_id = {task} AND attempt = {attempt}"
            ));
            (task, attempt, owner)
        })
        .collect()
}

#[test]
fn a_daemon_killed_and_restarted_while_remote_steps_run_gets_each_result_once_with_its_bundle() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let mut yaml = "name: restart\ndefaults:\n  retry: {max_attempts: 3, backoff: 0s, max_backoff: 0s, jitter: 0s}\ntasks:\n".to_owned();
    for n in 1..=6 {
        yaml.push_str(&format!(
            "  - id: t{n}\n    title: Task {n}\n    steps:\n      - name: work\n        exec:\n          - argv: [echo, start-{n}]\n          - argv: [sleep, \"3\"]\n          - argv: [echo, end-{n}]\n"
        ));
    }
    let ids = home.submit("restart", &yaml, repo.path());
    let serve_args = ["--workers", "1", "--lease", "2s", "--grace", "1s"];
    let serve = home.serve(&serve_args);
    let (server, token) = server_and_token(&home);
    // Leases long enough to outlive the daemon's absence: heartbeats fail while it is away.
    let remote = |name: &str, worker_home: &Home| {
        worker_home.spawn_with_env(
            &[
                "worker", "--server", &server, "--name", name, "--slots", "1", "--lease", "10s",
                "--grace", "1s",
            ],
            &[("ORCH_WORKER_TOKEN", &token)],
        )
    };
    let (alpha_home, beta_home) = (Home::new(), Home::new());
    let alpha = remote("alpha", &alpha_home);
    let beta = remote("beta", &beta_home);

    // Both remote workers are in `sleep 3`, as the daemon's own copy of their logs shows: the
    // log lines were streamed to it while the step runs.
    let running = poll_until(
        "both remote workers to stream `sleep 3`",
        SERVE_DEADLINE,
        || {
            let runs = remote_runs(&home, "active");
            let streaming = runs
                .iter()
                .filter(|(task, attempt, _)| {
                    std::fs::read_to_string(home.run_dir(*task, *attempt as u32).join("logs.txt"))
                        .is_ok_and(|text| text.contains("$ sleep 3"))
                })
                .count();
            (runs.len() == 2 && streaming == 2).then_some(runs)
        },
    );
    let killed = serve.kill();
    assert_eq!(killed.code, None, "killed by the signal\n{}", killed.stderr);
    // The remote steps go on without the daemon and finish: their results are written in the
    // workers' own homes, and the workers keep trying to deliver bundle and outcome.
    poll_until(
        "the remote runs to finish without the daemon",
        SERVE_DEADLINE,
        || {
            running
                .iter()
                .all(|(task, attempt, owner)| {
                    let worker_home = if owner.starts_with("alpha") {
                        &alpha_home
                    } else {
                        &beta_home
                    };
                    std::fs::read_to_string(
                        worker_home
                            .run_dir(*task, *attempt as u32)
                            .join("result.json"),
                    )
                    .is_ok_and(|text| text.contains("succeeded"))
                })
                .then_some(())
        },
    );
    // Restart on the same port and home; the results arrive now.
    let addr = server.trim_start_matches("http://");
    let mut args = vec!["serve", "--listen", addr];
    args.extend_from_slice(&serve_args);
    let serve = home.spawn(&args);

    poll_until("every task to be done", SERVE_DEADLINE, || {
        ids.values()
            .all(|id| home.task_status(*id) == "done")
            .then_some(())
    });
    assert_eq!(home.tasks_completed_more_than_once(), vec![]);
    for (key, id) in &ids {
        let task = home.task(*id);
        assert_eq!(task_events(&task, "complete").len(), 1, "{key}: {task:#}");
    }
    // The runs that were in flight while the daemon was away finished on their remote workers.
    for (task, attempt, owner) in &running {
        let state = home.query_text(&format!(
            "SELECT state FROM runs WHERE task_id = {task} AND attempt = {attempt}"
        ));
        assert_eq!(
            state, "succeeded",
            "task {task} attempt {attempt} on {owner}"
        );
    }
    // Every remote run's bundle is in the daemon's home, whole: the command output matches the
    // sha256 its manifest recorded, and the logs read like an embedded run's.
    let finished = remote_runs(&home, "succeeded");
    assert!(finished.len() >= 2, "{finished:?}");
    for (task, attempt, owner) in &finished {
        let dir = home.run_dir(*task, *attempt as u32);
        let result = read_json(&dir.join("result.json"));
        assert_eq!(result["status"], "succeeded", "{owner}: {result:#}");
        let manifest = read_json(&dir.join("manifest.json"));
        let entries = manifest["entries"].as_array().expect("entries");
        assert_eq!(entries.len(), 3, "{owner}: {manifest:#}");
        for entry in entries {
            let stdout = entry["stdout"]["path"].as_str().expect("a stdout path");
            assert_eq!(
                sha256_of(&dir.join(stdout)),
                entry["stdout"]["sha256"].as_str().expect("a sha256"),
                "{owner}: {stdout}"
            );
        }
        let key = ids
            .iter()
            .find(|(_, id)| **id == *task)
            .map(|(key, _)| key.trim_start_matches('t'))
            .expect("a task of the workflow");
        let logs = home.run(&["task", "logs", &task.to_string()]);
        logs.expect_code(0, "orch task logs");
        assert!(
            logs.stdout.contains(&format!("end-{key}")),
            "{owner}: {}",
            logs.stdout
        );
        let orch_log = read_text(&dir.join("logs.txt"));
        assert_eq!(
            orch_log.matches("$ sleep 3").count(),
            1,
            "streamed once, uploaded once, never doubled: {orch_log}"
        );
    }
    home.assert_consistent("after the daemon restart");

    for worker in [alpha, beta] {
        worker.signal(Signal::SIGTERM);
        worker
            .finish(SERVE_DEADLINE)
            .expect_code(0, "orch worker after SIGTERM");
    }
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");
}

#[test]
fn a_remote_worker_and_the_cli_reach_a_daemon_serving_tls_with_a_self_signed_certificate() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = home.write("cert.pem", &certified.cert.pem());
    let key = home.write("key.pem", &certified.key_pair.serialize_pem());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());

    let bad = home
        .serve(&["--tls-cert", cert, "--tls-key", cert])
        .finish(SERVE_DEADLINE);
    bad.expect_code(2, "orch serve with a certificate for a key");
    assert!(bad.stderr.contains("TLS"), "{}", bad.stderr);

    let yaml = "name: tls\ntasks:\n  - id: hello\n    title: Over TLS\n    steps:\n      - name: hello\n        exec:\n          - argv: [echo, over-tls]\n";
    let ids = home.submit("tls", yaml, repo.path());
    let serve = home.serve(&["--workers", "0", "--tls-cert", cert, "--tls-key", key]);
    let addr = poll_until("serve.addr", SERVE_DEADLINE, || {
        Some(read_trimmed(&home.path().join("serve.addr"))).filter(|a| !a.is_empty())
    });
    let server = format!("https://{addr}");
    let token = read_trimmed(&home.path().join("worker-token"));

    // Without the certificate the client refuses the daemon, and says it could not connect.
    let untrusted = home.run(&["status", "--server", &server, "--json"]);
    assert_ne!(untrusted.code, Some(0), "{}", untrusted.stdout);
    let trusted = home.json(&["status", "--server", &server, "--ca-cert", cert, "--json"]);
    assert_eq!(trusted["total"], 1, "{trusted}");

    let worker_home = Home::new();
    let worker = worker_home.spawn_with_env(
        &[
            "worker", "--server", &server, "--name", "tls", "--lease", "5s", "--grace", "1s",
        ],
        &[
            ("ORCH_WORKER_TOKEN", token.as_str()),
            ("ORCH_CA_CERT", cert),
        ],
    );
    let id = ids["hello"];
    poll_until("the task to be done over TLS", SERVE_DEADLINE, || {
        (home.task_status(id) == "done").then_some(())
    });
    let stdout = home.run_dir(id, 1).join("steps/hello/cmd-1.stdout.log");
    assert_eq!(read_text(&stdout), "over-tls\n");

    worker.signal(Signal::SIGTERM);
    worker
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch worker after SIGTERM");
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");
}

#[test]
fn a_remote_worker_runs_tasks_in_the_checkout_its_project_flag_names_not_the_daemons_path() {
    let home = Home::new();
    let daemons = Repo::new(&[("README.md", "# the daemon's checkout\n")]);
    let workers = Repo::new(&[
        ("README.md", "# the worker's checkout\n"),
        ("only-here.txt", "from the worker's checkout\n"),
    ]);
    let yaml = "name: mapped\ntasks:\n  - id: read\n    title: Read a file only the worker's checkout has\n    steps:\n      - name: read\n        exec:\n          - argv: [cat, only-here.txt]\n";
    let ids = home.submit("mapped", yaml, daemons.path());
    let name = home.query_text("SELECT name FROM projects");
    let serve = home.serve(&["--workers", "0"]);
    let addr = poll_until("serve.addr", SERVE_DEADLINE, || {
        Some(read_trimmed(&home.path().join("serve.addr"))).filter(|a| !a.is_empty())
    });
    let token = read_trimmed(&home.path().join("worker-token"));
    let mapping = format!("{name}={}", workers.path().display());
    let worker_home = Home::new();
    let worker = worker_home.spawn_with_env(
        &[
            "worker",
            "--server",
            &format!("http://{addr}"),
            "--name",
            "mapped",
            "--project",
            &mapping,
            "--lease",
            "5s",
            "--grace",
            "1s",
        ],
        &[("ORCH_WORKER_TOKEN", token.as_str())],
    );
    let id = ids["read"];
    poll_until("the task to finish", SERVE_DEADLINE, || {
        let status = home.task_status(id);
        (status == "done" || status == "failed" || status == "retry_wait").then_some(status)
    });
    assert_eq!(home.task_status(id), "done", "{:#}", home.task(id));
    let stdout = home.run_dir(id, 1).join("steps/read/cmd-1.stdout.log");
    assert_eq!(read_text(&stdout), "from the worker's checkout\n");
    let bad = worker_home.run(&[
        "worker",
        "--server",
        "http://127.0.0.1:9",
        "--name",
        "x",
        "--project",
        "no-equals-sign",
    ]);
    bad.expect_code(2, "a --project without NAME=PATH");
    assert!(bad.stderr.contains("NAME=PATH"), "{}", bad.stderr);

    worker.signal(Signal::SIGTERM);
    worker
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch worker after SIGTERM");
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");
}

/// A remote worker killed with SIGKILL mid-step and restarted on the same home stops its
/// previous incarnation's step before the task runs again: the step of the retry, in the same
/// worktree, finds the first step's process gone (an ordering marker written by the retry
/// itself), and the task ends with one `done`. A second worker on a home in use is refused.
#[test]
fn a_remote_worker_killed_mid_step_and_restarted_stops_the_old_step_before_the_task_runs_again() {
    let home = Home::new();
    // `step.pid` is ignored: a retry resets the worktree to the branch's last checkpoint, which
    // deletes what a lost attempt left untracked but keeps ignored files.
    let repo = Repo::new(&[
        (".orch.toml", "allow_shell = true\n"),
        (".gitignore", "step.pid\n"),
    ]);
    // The first run records its pid and sleeps (as `exec sleep`, keeping the pid); the retry,
    // in the same worktree, writes whether that pid is still alive and ends.
    // (A killed process may stay a zombie here, which `kill -0` would call alive: read its state.)
    let step = "if test -e step.pid; then if grep -qs '^State:[[:space:]]*[^Z[:space:]]' /proc/$(cat step.pid)/status; then echo old-alive >> marks.txt; else echo old-gone >> marks.txt; fi; exit 0; fi; echo $$ > step.pid; exec sleep 60";
    let yaml = format!(
        "name: restart\ndefaults:\n  retry: {{max_attempts: 3, backoff: 0s, max_backoff: 0s, jitter: 0s}}\ntasks:\n  - id: t\n    title: Sleep once\n    steps:\n      - name: sleep\n        exec:\n          - argv: [sh, -c, \"{step}\"]\n"
    );
    let id = home.submit("restart", &yaml, repo.path())["t"];
    let serve = home.serve(&["--workers", "0", "--lease", "2s", "--grace", "1s"]);
    let (server, token) = server_and_token(&home);

    let worker_home = Home::new();
    let first = worker(&worker_home, &server, &token, "w");
    let run_dir = worker_home.run_dir(id, 1);
    let pid: i32 = poll_until("the first run's step to sleep", SERVE_DEADLINE, || {
        let logs = std::fs::read_to_string(run_dir.join("logs.txt")).ok()?;
        logs.contains(" workspace ").then_some(())?;
        let text = std::fs::read_to_string(workspace_of(&run_dir).join("step.pid")).ok()?;
        text.trim().parse().ok()
    });
    assert!(process_is_alive(pid));

    // The home is this worker's: a second worker on it is refused.
    let second = worker_home.spawn_with_env(
        &["worker", "--server", &server, "--name", "other"],
        &[("ORCH_WORKER_TOKEN", token.as_str())],
    );
    let refused = second.finish(SERVE_DEADLINE);
    refused.expect_code(2, "a second worker on a home in use");
    assert!(
        refused.stderr.contains("is using this home"),
        "{}",
        refused.stderr
    );

    let killed = first.kill();
    assert_eq!(killed.code, None, "killed by the signal\n{}", killed.stderr);
    assert!(
        process_is_alive(pid),
        "SIGKILL of the worker alone stops its step (the test would prove nothing)"
    );
    let restarted = worker(&worker_home, &server, &token, "w");
    poll_until("the task to be done", SERVE_DEADLINE, || {
        (home.task_status(id) == "done").then_some(())
    });
    let alive = process_is_alive(pid);
    if alive {
        // Started by this test (through orch); end it so it does not sleep on.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(!alive, "the old step (pid {pid}) outlived the restart");
    let marks = read_text(&workspace_of(&worker_home.run_dir(id, 2)).join("marks.txt"));
    assert_eq!(
        marks, "old-gone\n",
        "the retry's step ran while the old one lived"
    );
    let task = home.task(id);
    assert_eq!(task_events(&task, "complete").len(), 1, "{task:#}");
    assert_eq!(home.tasks_completed_more_than_once(), vec![]);

    restarted.signal(Signal::SIGTERM);
    restarted
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch worker after SIGTERM");
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");
}
