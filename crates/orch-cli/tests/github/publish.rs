//! `orch task publish <id>` really opens the issue on the forge, once (also when asked twice),
//! and the task's labels and marker comment follow on it.

use crate::outbound_world::{stop, World, REPO};
use crate::support::{int, poll_until, SERVE_DEADLINE};

#[test]
fn publish_opens_one_issue_that_carries_the_tasks_labels_and_marker_comment() {
    let world = World::new("");
    let project = world.repo.path().to_str().unwrap();
    let task = int(
        &world.home.json(&[
            "task",
            "add",
            "Local work",
            "--body",
            "Made on a laptop.",
            "--exec",
            "true",
            "--project",
            project,
            "--json",
        ]),
        "id",
    );
    let serve = world.serve();
    let published = world
        .home
        .json(&["task", "publish", &task.to_string(), "--json"]);
    assert_eq!(published["enqueued"], true, "{published}");
    // Asked again: nothing new (still queued), or refused once the issue exists.
    let again = world
        .home
        .run(&["task", "publish", &task.to_string(), "--json"]);
    if again.code == Some(0) {
        assert_eq!(again.json()["enqueued"], false, "{}", again.stdout);
    } else {
        again.expect_code(2, "publishing a published task");
        assert!(again.stderr.contains("already"), "{}", again.stderr);
    }
    let issue = poll_until("the published issue", SERVE_DEADLINE, || {
        world.home.task(task)["forge"]["issue"].as_u64()
    });
    world.wait_outbox_drained();
    let issues = world.fake.issues(REPO);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].number, issue);
    assert_eq!(issues[0].title, "Local work");
    let body = issues[0].body.clone().unwrap_or_default();
    assert!(body.contains("Made on a laptop."), "{body}");
    assert!(
        body.contains(&format!("<!-- orch:task {task} -->")),
        "{body}"
    );
    // The issue's webhook came back to orch: it names the published task, no second task.
    assert_eq!(world.home.query_int("SELECT COUNT(*) FROM tasks"), 1);
    poll_until("the task's labels", SERVE_DEADLINE, || {
        let labels = world.fake.issue_labels(REPO, issue);
        labels
            .iter()
            .any(|l| l.starts_with("status:"))
            .then_some(labels)
    });
    let comments = world.bot_comments(issue);
    assert_eq!(comments.len(), 1, "{comments:#?}");
    assert!(comments[0]
        .body
        .starts_with(&format!("<!-- orch:task {task} -->")));
    assert_eq!(
        world
            .fake
            .request_count("POST /repos/{owner}/{repo}/issues"),
        1
    );
    let shown = world.home.run(&["task", "get", &task.to_string()]);
    assert!(
        shown.stdout.contains(&format!("issue:    {REPO}#{issue}")),
        "{}",
        shown.stdout
    );
    stop(serve);
}
