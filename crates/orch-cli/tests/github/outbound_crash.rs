//! Exactly once across crashes: `orch serve` is SIGKILLed while a forge write is in flight (the
//! marker comment's creation, the pull request's creation, a label change) and restarted; at
//! the end the forge has one pull request, one marker comment and the right labels, and no
//! write was lost. Counted at the fake.

use std::time::Duration;

use orch_github_fake::{Fault, FaultKind};

use crate::outbound_world::{stop, World, REPO};
use crate::support::{poll_until, Process, SERVE_DEADLINE};

/// Hold the next request on `route` for a long time (the daemon dies meanwhile).
fn hold(world: &World, route: &str) {
    world.fake.inject(Fault {
        kind: FaultKind::Delay {
            delay: Duration::from_secs(30),
        },
        remaining: Some(1),
        until: None,
        route: Some(route.to_owned()),
    });
}

/// Wait until a request on `route` is in flight at the fake, then SIGKILL the daemon.
fn kill_during(world: &World, serve: Process, route: &str) {
    poll_until(&format!("{route} in flight"), SERVE_DEADLINE, || {
        world
            .fake
            .requests()
            .iter()
            .any(|r| r.route == route && r.status == 0)
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(200));
    serve.kill();
}

/// Start the daemon again (on a new port: the webhook URL moves with it).
fn restart(world: &World) -> Process {
    let _ = std::fs::remove_file(world.home.path().join("serve.addr"));
    world.serve()
}

#[test]
fn a_daemon_killed_during_forge_writes_makes_each_write_once_and_misses_none() {
    let world = World::new("");
    let comments = "POST /repos/{owner}/{repo}/issues/{number}/comments";
    let pulls = "POST /repos/{owner}/{repo}/pulls";
    let labels = "POST /repos/{owner}/{repo}/issues/{number}/labels";
    hold(&world, comments);
    hold(&world, pulls);
    let serve = world.serve();
    let issue = world
        .fake
        .create_issue(REPO, "Write the release notes", "", &["orch"]);
    let task = world.task_of(issue);

    // 1. While the marker comment is being created.
    kill_during(&world, serve, comments);
    // 2. While the pull request is being opened (the branch is pushed already).
    let serve = restart(&world);
    kill_during(&world, serve, pulls);
    // 3. While a label change is in flight.
    hold(&world, labels);
    let serve = restart(&world);
    if world.home.task_status(task) != "done"
        || world
            .unfinished_ops()
            .iter()
            .any(|r| r[0].starts_with("labels:"))
    {
        kill_during(&world, serve, labels);
    } else {
        world.fake.clear_faults();
        serve.kill();
    }
    world.fake.clear_faults();
    let serve = restart(&world);

    world.wait_done(task);
    let pull = poll_until("the pull request", SERVE_DEADLINE, || {
        world.home.task(task)["forge"]["pr_number"].as_u64()
    });
    world.wait_outbox_drained();
    // Once each, nothing missed.
    assert_eq!(world.fake.pulls(REPO).len(), 1, "one pull request");
    assert_eq!(world.fake.pulls(REPO)[0].number, pull);
    let comments_made = world.bot_comments(issue);
    assert_eq!(
        comments_made.len(),
        1,
        "one marker comment: {comments_made:#?}"
    );
    assert!(
        comments_made[0].body.contains("status: `done`")
            && comments_made[0].body.contains(&format!("#{pull}")),
        "{}",
        comments_made[0].body
    );
    let mut now = world.fake.issue_labels(REPO, issue);
    now.sort();
    assert_eq!(now, ["agent:sim", "orch", "status:done"]);
    let body = world.fake.pulls(REPO)[0].body.clone().unwrap_or_default();
    assert!(body.starts_with(&format!("Closes #{issue}")), "{body}");
    stop(serve);
}

#[test]
fn a_branch_pushed_without_its_pull_request_gets_one_after_a_restart() {
    let world = World::new("");
    // The pull request's first step (looking for an open one) hangs; the daemon dies there.
    let find = "GET /repos/{owner}/{repo}/pulls";
    hold(&world, find);
    let serve = world.serve();
    let issue = world
        .fake
        .create_issue(REPO, "Add a changelog", "", &["orch"]);
    let task = world.task_of(issue);
    kill_during(&world, serve, find);
    assert!(
        world.home.task(task)["forge"]["pushed_commit"].is_string(),
        "pushed before the pull request"
    );
    // As if the daemon had died between the push and enqueueing the pull request.
    assert_eq!(
        world.home.execute(&format!(
            "DELETE FROM forge_outbox WHERE idempotency_key = 'pull:task-{task}'"
        )),
        1
    );
    world.fake.clear_faults();
    let serve = restart(&world);
    let pull = poll_until("the pull request", SERVE_DEADLINE, || {
        world.home.task(task)["forge"]["pr_number"].as_u64()
    });
    world.wait_outbox_drained();
    let pulls = world.fake.pulls(REPO);
    assert_eq!(pulls.len(), 1, "{pulls:#?}");
    assert_eq!(pulls[0].number, pull);
    assert!(pulls[0]
        .body
        .as_deref()
        .unwrap_or_default()
        .starts_with(&format!("Closes #{issue}")));
    stop(serve);
}
