//! The daemon's life: `orch serve` killed with SIGKILL and restarted, stopped with SIGTERM within
//! and past its grace period, and picking up tasks that other processes add while it runs.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::{
    event_kinds, int, poll_until, read_json, read_text, task_events, Home, Repo, SERVE_DEADLINE,
};

/// Wait until the run's `logs.txt` shows that `command` started.
fn wait_for_command(home: &Home, task: i64, command: &str) {
    let logs = home.run_dir(task, 1).join("logs.txt");
    poll_until(&format!("`{command}` to start"), SERVE_DEADLINE, || {
        std::fs::read_to_string(&logs)
            .ok()
            .filter(|text| text.contains(&format!("$ {command}")))
            .map(drop)
    });
}

/// `(attempt, state)` of each run of a task, oldest first.
fn runs(task: &Value) -> Vec<(i64, String)> {
    task["runs"]
        .as_array()
        .expect("`runs` is a list")
        .iter()
        .map(|r| {
            (
                int(r, "attempt"),
                r["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_daemon_killed_mid_run_is_restarted_and_every_task_finishes_exactly_once() {
    const TASKS: usize = 4;
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let mut yaml = "name: crash\ndefaults:\n  retry: {max_attempts: 3, backoff: 0s, max_backoff: 0s, jitter: 0s}\ntasks:\n".to_owned();
    for n in 1..=TASKS {
        yaml.push_str(&format!(
            "  - id: t{n}\n    title: Slow task {n}\n    steps:\n      - name: slow\n        agent: sim\n        prompt: |\n          Take a while.\n          @sleep 1500\n          @write out-{n}.txt\n          task {n}\n          @end\n"
        ));
    }
    let ids = home.submit("crash", &yaml, repo.path());
    assert_eq!(ids.len(), TASKS);

    let serve = home.serve(&["--workers", "2", "--lease", "2s", "--grace", "1s"]);
    poll_until("two tasks to be running", SERVE_DEADLINE, || {
        (home.query_int("SELECT COUNT(*) FROM tasks WHERE status = 'running'") == 2).then_some(())
    });
    let killed = serve.kill();
    assert_eq!(killed.code, None, "killed by the signal\n{}", killed.stderr);
    let interrupted: Vec<i64> = home
        .query_pairs("SELECT task_id, id FROM runs WHERE state = 'active' ORDER BY task_id")
        .into_iter()
        .map(|(task, _)| task)
        .collect();
    assert_eq!(interrupted.len(), 2, "the kill left two runs active");

    home.serve_until_idle(2);

    for (key, id) in &ids {
        let task = home.task(*id);
        assert_eq!(task["task"]["status"], "done", "{key}: {task:#}");
        assert_eq!(task_events(&task, "complete").len(), 1, "{key}");
        let expected = if interrupted.contains(id) {
            vec![(1, "lost".to_owned()), (2, "succeeded".to_owned())]
        } else {
            vec![(1, "succeeded".to_owned())]
        };
        assert_eq!(runs(&task), expected, "{key}: {:#}", task["runs"]);
        let last = expected.len() as u32;
        let result = read_json(&home.run_dir(*id, last).join("result.json"));
        assert_eq!(result["status"], "succeeded", "{key}: {result:#}");
    }
    for id in &interrupted {
        let task = home.task(*id);
        let lose = task_events(&task, "lose");
        assert_eq!(lose.len(), 1, "{:#}", task["events"]);
        assert!(
            lose[0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("its worker restarted")),
            "{}",
            lose[0]
        );
    }
    assert_eq!(
        home.query_int("SELECT COUNT(*) FROM runs WHERE state = 'lost'"),
        2
    );
    assert_eq!(
        home.query_int("SELECT COUNT(*) FROM runs WHERE state = 'active'"),
        0
    );
    home.assert_consistent("after the restarted daemon finished");
}

#[test]
fn sigterm_lets_a_running_step_finish_within_the_grace_period() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let ids = home.submit(
        "graceful",
        "name: graceful\ntasks:\n  - id: one\n    title: One second\n    steps:\n      - name: wait\n        exec:\n          - argv: [sleep, \"1\"]\n",
        repo.path(),
    );
    let id = ids["one"];
    let serve = home.serve(&["--workers", "1", "--lease", "2s", "--grace", "10s"]);
    wait_for_command(&home, id, "sleep 1");
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");

    let task = home.task(id);
    assert_eq!(task["task"]["status"], "done", "{task:#}");
    assert_eq!(event_kinds(&task), ["create", "claim", "complete"]);
    let result = read_json(&home.run_dir(id, 1).join("result.json"));
    assert_eq!(result["status"], "succeeded");
    home.assert_consistent("after a graceful shutdown");
}

#[test]
fn sigterm_past_the_grace_period_requeues_the_running_task_without_using_an_attempt() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let ids = home.submit(
        "requeue",
        "name: requeue\ndefaults:\n  retry: {max_attempts: 1}\ntasks:\n  - id: slow\n    title: Thirty seconds\n    steps:\n      - name: wait\n        exec:\n          - argv: [sleep, \"30\"]\n",
        repo.path(),
    );
    let id = ids["slow"];
    let serve = home.serve(&["--workers", "1", "--lease", "2s", "--grace", "500ms"]);
    wait_for_command(&home, id, "sleep 30");
    let signalled = Instant::now();
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");
    let stopped_after = signalled.elapsed();
    // The step would run 30 s: stopping well before shows it was stopped after the grace
    // period, not waited for (the bound leaves room for a loaded machine's git and bundle work).
    assert!(
        stopped_after < Duration::from_secs(12),
        "orch serve took {stopped_after:?} to stop with a grace of 500ms"
    );

    let task = home.task(id);
    let status = task["task"]["status"].as_str().unwrap_or_default();
    assert!(
        status == "queued" || status == "retry_wait",
        "the task is back in the queue: {task:#}"
    );
    assert_eq!(task["task"]["attempts_used"], 0, "{task:#}");
    assert_eq!(task_events(&task, "requeue").len(), 1, "{task:#}");
    assert_eq!(runs(&task), [(1, "requeued".to_owned())]);

    home.serve_until_idle(1);
    let task = home.task(id);
    assert_eq!(task["task"]["status"], "done", "{task:#}");
    assert_eq!(task_events(&task, "complete").len(), 1);
    home.assert_consistent("after the requeued task was finished");
}

#[test]
fn a_task_added_by_another_process_while_serve_runs_is_picked_up_and_done_and_a_second_serve_is_refused(
) {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let serve = home.serve(&["--workers", "1", "--lease", "2s", "--grace", "1s"]);
    // The daemon holds its lock once it is up.
    poll_until("orch serve to start", SERVE_DEADLINE, || {
        home.path().join("serve.lock").exists().then_some(())
    });
    let second = home.run(&["serve", "--listen", "127.0.0.1:0", "--workers", "1"]);
    second.expect_code(2, "a second orch serve on the same home");
    assert!(
        second.stderr.contains("already running"),
        "{}",
        second.stderr
    );
    let project = repo.path().to_str().expect("temp paths are UTF-8");
    let added = home.json(&[
        "task",
        "add",
        "Say hello late",
        "--exec",
        "echo hello from a late task",
        "--project",
        project,
        "--json",
    ]);
    let id = int(&added, "id");
    poll_until("the added task to be done", SERVE_DEADLINE, || {
        (home.task_status(id) == "done").then_some(())
    });
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");
    let output = home
        .run_dir(id, 1)
        .join("steps")
        .read_dir()
        .expect("the run has a steps directory")
        .map(|step| step.expect("an entry").path().join("cmd-1.stdout.log"))
        .map(|file| read_text(&file))
        .collect::<Vec<_>>();
    assert_eq!(output, ["hello from a late task\n"]);
}
