//! The outbound half through `orch serve`: an issue labelled `orch` becomes a task, `sim`
//! edits, the branch is pushed to the fake over HTTP with the token, the pull request is opened
//! (titled from the task, with the report, usage and `Closes #N`), the issue's labels follow the
//! task's status, and one marker comment is edited in place up to the final state with the
//! pull request's link. `orch task get` shows the pull request.

use crate::outbound_world::{stop, World, REPO};
use crate::support::{poll_until, SERVE_DEADLINE};

/// The task's final labels and marker comment, once everything was sent.
fn finished(world: &World, issue: u64, task: i64) -> orch_github_fake::PullView {
    world.wait_done(task);
    let pull = poll_until("the pull request", SERVE_DEADLINE, || {
        world.fake.pulls(REPO).into_iter().next()
    });
    world.wait_outbox_drained();
    let mut labels = world.fake.issue_labels(REPO, issue);
    labels.sort();
    assert_eq!(
        labels,
        ["agent:sim", "orch", "status:done"],
        "old status labels removed"
    );
    pull
}

#[test]
fn an_issue_becomes_a_pushed_branch_and_one_pull_request_with_labels_and_one_marker_comment() {
    let world = World::new("");
    let serve = world.serve();
    let issue = world.fake.create_issue(
        REPO,
        "Write the release notes",
        "List what changed.",
        &["orch"],
    );
    let task = world.task_of(issue);
    let pull = finished(&world, issue, task);

    // The pull request: the task's branch, titled from the task, closing the issue.
    let detail = world.home.task(task);
    let forge = &detail["forge"];
    assert_eq!(pull.title, "Write the release notes");
    assert_eq!(pull.base, "main");
    assert!(!pull.draft);
    assert_eq!(forge["head_branch"], pull.head.as_str(), "{detail:#}");
    let body = pull.body.clone().unwrap_or_default();
    assert!(body.starts_with(&format!("Closes #{issue}")), "{body}");
    assert!(body.contains("Usage: $"), "{body}");
    assert!(
        body.contains(&format!("<!-- orch:task {task} -->")),
        "{body}"
    );
    // What was pushed is the agent's commit, on the forge's repository.
    let commit = forge["pushed_commit"].as_str().unwrap();
    assert_eq!(pull.head_sha, commit);
    assert_eq!(
        world.fake.branch_tip(REPO, &pull.head).as_deref(),
        Some(commit)
    );
    let notes = world.fake.file_at(REPO, &pull.head, "NOTES.md").unwrap();
    assert!(notes.contains("Write the release notes"), "{notes}");

    // The task shows the pull request (JSON and human).
    assert_eq!(forge["pr_number"], pull.number, "{detail:#}");
    let url = forge["pr_url"].as_str().unwrap();
    assert!(url.ends_with(&format!("/pull/{}", pull.number)), "{url}");
    assert_eq!(forge["issue"], issue);
    assert!(forge["marker_comment_id"].as_u64().is_some(), "{detail:#}");
    let shown = world.home.run(&["task", "get", &task.to_string()]);
    assert!(
        shown
            .stdout
            .contains(&format!("pull:     #{} ({url})", pull.number)),
        "{}",
        shown.stdout
    );

    // One marker comment, edited in place through the states, ending with the final state,
    // the run history, the cost and the pull request's link.
    let comments = world.bot_comments(issue);
    assert_eq!(comments.len(), 1, "{comments:#?}");
    let marker = &comments[0];
    assert_eq!(
        Some(marker.id),
        forge["marker_comment_id"].as_u64(),
        "{detail:#}"
    );
    assert!(!marker.edits.is_empty(), "edited in place: {marker:#?}");
    assert!(marker.body.contains("status: `done`"), "{}", marker.body);
    assert!(marker.body.contains("| 1 |"), "{}", marker.body);
    assert!(marker.body.contains("Cost: $"), "{}", marker.body);
    assert!(
        marker
            .body
            .contains(&format!("pull request [#{}]({url})", pull.number)),
        "{}",
        marker.body
    );
    // The label set orch uses exists on the repository.
    let labels: Vec<String> = world
        .fake
        .labels(REPO)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    for wanted in ["plan", "status:running", "status:needs_review"] {
        assert!(labels.iter().any(|l| l == wanted), "{wanted}: {labels:?}");
    }
    // Exactly one pull request was ever opened, and one comment written.
    assert_eq!(world.fake.pulls(REPO).len(), 1);
    assert_eq!(
        world
            .fake
            .request_count("POST /repos/{owner}/{repo}/issues/{number}/comments"),
        1
    );
    stop(serve);
}

#[test]
fn a_draft_is_opened_when_configured_and_a_failed_push_is_retried() {
    let world = World::new("draft_prs = true");
    // The forge's repository refuses pushes while a flag file exists (a real pre-receive hook).
    let flag = world.home.write("refuse-pushes", "");
    let hook = world.fake.bare_path(REPO).join("hooks").join("pre-receive");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nif [ -e '{}' ]; then echo 'refused for the test' >&2; exit 1; fi\n",
            flag.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let serve = world.serve();
    let issue = world
        .fake
        .create_issue(REPO, "Tidy the changelog", "", &["orch"]);
    let task = world.task_of(issue);
    world.wait_done(task);
    // The push was refused: no branch, no pull request, while the status labels went on.
    poll_until("the done label", SERVE_DEADLINE, || {
        world
            .fake
            .issue_labels(REPO, issue)
            .contains(&"status:done".to_owned())
            .then_some(())
    });
    assert!(world.fake.pulls(REPO).is_empty());
    // The forge takes pushes again: the push is tried again (with backoff) and goes through,
    // without the task finishing again.
    std::fs::remove_file(&flag).unwrap();
    let pull = finished(&world, issue, task);
    assert!(pull.draft, "draft_prs = true");
    assert_eq!(world.fake.pulls(REPO).len(), 1);
    assert_eq!(world.bot_comments(issue).len(), 1);
    assert_eq!(
        world
            .home
            .query_int(&format!("SELECT COUNT(*) FROM runs WHERE task_id = {task}")),
        1
    );
    stop(serve);
}
