//! Telling the user what happens next (issue 11, item 5): a submission with no daemon says how
//! to get one; `orch run --wait` runs a workflow to the end and exits with its outcome; `orch
//! serve` announces the address it bound.

use crate::support::{poll_until, Home, Repo, SERVE_DEADLINE};

const GOOD: &str = "tasks:\n\
  \x20 - id: first\n    title: First\n    steps:\n      - exec: [{argv: [\"true\"]}]\n\
  \x20 - id: second\n    title: Second\n    needs: [first]\n    steps:\n      - agent: sim\n";

const BAD: &str = "tasks:\n\
  \x20 - id: fine\n    title: Fine\n    steps:\n      - exec: [{argv: [\"true\"]}]\n\
  \x20 - id: broken\n    title: Broken\n    retry: {max_attempts: 1}\n    steps:\n      - exec: [{argv: [\"false\"]}]\n\
  \x20 - id: after\n    title: After\n    needs: [broken]\n    steps:\n      - exec: [{argv: [\"true\"]}]\n";

#[test]
fn a_submission_without_a_daemon_says_how_to_start_one() {
    let home = Home::new();
    let added = home.run(&["task", "add", "A", "--json"]);
    added.expect_code(0, "orch task add");
    assert!(
        added.stderr.contains("no orch daemon is running")
            && added.stderr.contains("`orch serve`")
            && added.stderr.contains("`orch run --wait FILE`"),
        "{}",
        added.stderr
    );
    added.json();
}

#[test]
fn run_wait_runs_the_workflow_here_and_exits_0_when_all_are_done() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let wf = home.write("good.yml", GOOD);
    let project = repo.path().to_str().unwrap();
    let finished = home
        .spawn(&["run", wf.to_str().unwrap(), "--project", project, "--wait"])
        .finish(SERVE_DEADLINE);
    finished.expect_code(0, "orch run --wait");
    assert!(
        finished.stderr.contains("all 2 task(s) done"),
        "{}",
        finished.stderr
    );
    let (total, counts) = home.status_counts();
    assert_eq!((total, counts.get("done").copied()), (2, Some(2)));
}

#[test]
fn run_wait_exits_1_naming_the_failed_task() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let wf = home.write("bad.yml", BAD);
    let project = repo.path().to_str().unwrap();
    let finished = home
        .spawn(&["run", wf.to_str().unwrap(), "--project", project, "--wait"])
        .finish(SERVE_DEADLINE);
    finished.expect_code(1, "orch run --wait with a failing task");
    let broken = finished
        .stderr
        .lines()
        .find(|l| l.contains("(broken) failed"))
        .unwrap_or_else(|| panic!("no line names the failed task:\n{}", finished.stderr));
    assert!(broken.starts_with("task "), "{broken}");
    assert!(
        finished.stderr.contains("(after) blocked")
            && finished.stderr.contains("2 of 3 task(s) not done"),
        "{}",
        finished.stderr
    );
}

#[test]
fn run_wait_follows_a_running_daemon_and_serve_announces_its_bound_address() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let daemon = home.serve(&["--workers", "1", "--lease", "2s"]);
    let addr = poll_until("serve.addr", SERVE_DEADLINE, || {
        std::fs::read_to_string(home.path().join("serve.addr")).ok()
    });
    let wf = home.write("good.yml", GOOD);
    let project = repo.path().to_str().unwrap();
    let finished = home
        .spawn(&["run", wf.to_str().unwrap(), "--project", project, "--wait"])
        .finish(SERVE_DEADLINE);
    finished.expect_code(0, "orch run --wait through the daemon");
    assert!(
        !finished.stderr.contains("embedded worker") && !finished.stderr.contains("no orch daemon"),
        "{}",
        finished.stderr
    );
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let served = daemon.finish(SERVE_DEADLINE);
    served.expect_code(0, "orch serve after SIGTERM");
    let line = served
        .stderr
        .lines()
        .find(|l| l.contains("API listening on"))
        .unwrap_or_else(|| panic!("no address announced:\n{}", served.stderr));
    assert_eq!(
        line,
        format!("orch serve: API listening on http://{}", addr.trim())
    );
    assert!(!addr.trim().ends_with(":0"), "{addr}");
}
