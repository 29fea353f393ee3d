//! Remote workers: `orch serve --workers 0` and `orch worker` processes with their own homes,
//! speaking HTTP; a worker killed with SIGKILL mid-step has its task finished by another.

use std::path::Path;

use nix::sys::signal::Signal;

use crate::support::{int, poll_until, task_events, Home, Process, Repo, SERVE_DEADLINE};

/// Start a remote worker with its own home; the token comes from the environment.
fn worker(home: &Home, server: &str, token: &str, name: &str) -> Process {
    home.spawn_with_env(
        &[
            "worker", "--server", server, "--name", name, "--slots", "1", "--lease", "2s",
            "--grace", "1s",
        ],
        &[("ORCH_WORKER_TOKEN", token)],
    )
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
    let addr = poll_until("serve.addr", SERVE_DEADLINE, || {
        Some(read_trimmed(&home.path().join("serve.addr"))).filter(|a| !a.is_empty())
    });
    let token = read_trimmed(&home.path().join("worker-token"));
    let server = format!("http://{addr}");

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
    let beta_home = Home::new();
    let beta = beta_home.spawn(&[
        "worker", "--server", &server, "--token", &token, "--name", "beta", "--slots", "1",
        "--lease", "2s", "--grace", "1s",
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
    home.assert_consistent("after the remote workflow");

    beta.signal(Signal::SIGTERM);
    beta.finish(SERVE_DEADLINE)
        .expect_code(0, "orch worker after SIGTERM");
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");
}
