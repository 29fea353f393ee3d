//! Bugs found while testing execution, each named after what must hold. They assert the correct
//! behaviour, so they fail until the bug is fixed (see each test's comment for where it is).

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::support::{
    poll_until, process_is_alive, read_json, read_text, workspace_of, Home, Repo, SERVE_DEADLINE,
};

/// A workflow of one task `t`, titled "Same title", whose sim step writes `<name>.txt`.
fn write_file_workflow(name: &str) -> String {
    format!(
        "name: {name}\ntasks:\n  - id: t\n    title: Same title\n    steps:\n      - name: write\n        agent: sim\n        prompt: |\n          Write a file.\n          @write {name}.txt\n          from home {name}\n          @end\n"
    )
}

/// Task ids are unique per home but branch names (`orch/<id>-<slug>`) are per repository
/// (`orch_worker::workspace::branch_name`), and `Workspace::prepare` reuses a branch that
/// exists. So a second home's task 1 either fails (the branch is checked out in the first
/// home's worktree) or, once that worktree is gone, silently continues on the first home's
/// branch and ships its commits in its own patch.
#[test]
fn tasks_of_two_homes_with_the_same_number_and_title_never_share_a_branch() {
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let first = Home::new();
    assert_eq!(
        first.submit("a", &write_file_workflow("a"), repo.path())["t"],
        1
    );
    first.serve_until_idle(1);
    assert_eq!(first.task_status(1), "done");
    let first_branch = repo.git(&["rev-parse", "orch/1-same-title"]);

    // The first home's worktree still exists.
    let second = Home::new();
    second.submit("b", &write_file_workflow("b"), repo.path());
    second.serve_until_idle(1);
    // Then it is deleted, the way a user starts over with a fresh home.
    drop(first);
    repo.git(&["worktree", "prune"]);
    let third = Home::new();
    third.submit("c", &write_file_workflow("c"), repo.path());
    third.serve_until_idle(1);

    for (home, name) in [(&second, "b"), (&third, "c")] {
        let task = home.task(1);
        assert_eq!(task["task"]["status"], "done", "home {name}: {task:#}");
        let result = read_json(&home.run_dir(1, 1).join("result.json"));
        assert_eq!(
            result["changed_files"],
            serde_json::json!([format!("{name}.txt")]),
            "home {name} carries another home's work: {result:#}"
        );
    }
    assert_eq!(
        repo.git(&["rev-parse", "orch/1-same-title"]),
        first_branch,
        "the first home's branch moved"
    );
}

/// Commands run in their own process groups (`orch_worker::exec::run_command`) and nothing
/// stops them when the daemon dies: after `kill -9` of `orch serve` the lost run's command keeps
/// running, in the same worktree the retry then uses.
#[test]
fn commands_of_a_daemon_killed_with_sigkill_do_not_outlive_its_restart() {
    let home = Home::new();
    let repo = Repo::new(&[(".orch.toml", "allow_shell = true\n")]);
    // The first attempt sleeps (as `exec sleep`, keeping the shell's pid); the retry, in the
    // same worktree, finds `started` and ends at once.
    let id = home.submit(
        "orphan",
        "name: orphan\ndefaults:\n  retry: {max_attempts: 3, backoff: 0s, jitter: 0s}\ntasks:\n  - id: t\n    title: Sleep once\n    steps:\n      - name: sleep\n        exec:\n          - argv: [sh, -c, \"echo $$ >> pids.txt; test -e started && exit 0; touch started; exec sleep 30\"]\n",
        repo.path(),
    )["t"];
    let serve = home.serve(&["--workers", "1", "--lease", "2s", "--grace", "1s"]);
    let run_dir = home.run_dir(id, 1);
    let pid: i32 = poll_until(
        "the first attempt to start sleeping",
        SERVE_DEADLINE,
        || {
            let logs = std::fs::read_to_string(run_dir.join("logs.txt")).ok()?;
            logs.contains(" workspace ").then_some(())?;
            let pids = std::fs::read_to_string(workspace_of(&run_dir).join("pids.txt")).ok()?;
            pids.lines().next()?.trim().parse().ok()
        },
    );
    serve.kill();
    home.serve_until_idle(1);
    assert_eq!(home.task_status(id), "done");

    let orphan_alive = process_is_alive(pid);
    if orphan_alive {
        // Started by this test (through orch); end it so it does not sleep on after the test.
        let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(
        !orphan_alive,
        "the command of the killed daemon's run (pid {pid}) was still running after the restart \
         finished the task"
    );
}

/// `ResultStatus::Cancelled` ("stopped: lease lost, shutdown, cancel") is never used:
/// `Runner::run` in `orch_worker::run` turns a stopped run into `Outcome::Failed`, and
/// `Runner::finish` writes `failed` into `result.json` and "run failed" into `logs.txt`, even for
/// a task that was cancelled or requeued.
#[test]
fn a_run_stopped_because_its_task_was_cancelled_is_recorded_as_cancelled_not_failed() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let id = home.submit(
        "cancel",
        "name: cancel\ntasks:\n  - id: t\n    title: Sleep long\n    steps:\n      - name: sleep\n        exec:\n          - argv: [sleep, \"20\"]\n",
        repo.path(),
    )["t"];
    let serve = home.serve(&["--workers", "1", "--lease", "2s", "--grace", "1s"]);
    let run_dir = home.run_dir(id, 1);
    poll_until("the command to start", SERVE_DEADLINE, || {
        std::fs::read_to_string(run_dir.join("logs.txt"))
            .ok()
            .filter(|logs| logs.contains("$ sleep 20"))
            .map(drop)
    });
    home.run(&["task", "cancel", &id.to_string()])
        .expect_code(0, "orch task cancel");
    poll_until(
        "the stopped run to write its report",
        SERVE_DEADLINE,
        || {
            std::fs::read_to_string(run_dir.join("report.md"))
                .ok()
                .filter(|report| !report.is_empty())
                .map(drop)
        },
    );
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");

    assert_eq!(home.task_status(id), "cancelled");
    let result = read_json(&run_dir.join("result.json"));
    assert_eq!(result["status"], "cancelled", "{result:#}");
    let logs = read_text(&run_dir.join("logs.txt"));
    assert!(!logs.contains("run failed"), "{logs}");
}
