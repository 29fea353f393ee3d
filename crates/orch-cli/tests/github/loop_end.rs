//! The end of issue 12's feedback loop through the real `orch serve` with `sim`, the fake GitHub
//! and a real bare repository, read back by polling ([`World`]): a pull request conflicting with
//! its base gets the base merged in and a follow-up that resolves the markers, and is merged; a
//! pull request merged by a human while its task is running a follow-up, or waits in
//! `needs_review`, finishes the task.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use orch_forge::{Forge, ForgeAuth, ForgeConfig, MergeMethod, RepoRef, SecretString};
use orch_github_fake::CheckRunSpec;

use crate::feedback::{approve_green, Sender, World, REPO};
use crate::support::{poll_until, workspace_of, Process, SERVE_DEADLINE};

/// A human merges pull request `pull` on the forge (as the token's user).
pub fn merge_by_hand(world: &World, pull: u64) {
    let config = ForgeConfig::github(ForgeAuth::Token(SecretString::from(world.token.clone())))
        .with_api_base(&world.fake.url())
        .unwrap();
    let forge = Forge::github(config).unwrap();
    let repo = RepoRef::parse(REPO).unwrap();
    crate::plan::block_on(forge.merge_pull(&repo, pull, MergeMethod::Merge, None)).unwrap();
}

/// The task's status, its reason, and its runs' states.
fn state(world: &World, task: i64) -> (String, String, Vec<String>) {
    let detail = world.home.task(task);
    let runs = detail["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["state"].as_str().unwrap_or_default().to_owned())
        .collect();
    (
        detail["task"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        detail["task"]["status_reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        runs,
    )
}

/// SIGTERM, and the daemon ends cleanly.
pub fn stop(serve: Process) {
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "serve after SIGTERM");
}

/// A human merges the pull request: the task ends `done` because of it, its issue is closed
/// and its worktree removed. Its runs' states.
fn merged_by_hand_finishes(
    world: &World,
    sender: &Sender,
    (task, issue, pull): (i64, u64, u64),
    worktree: &Path,
) -> Vec<String> {
    merge_by_hand(world, pull);
    let (_, reason, runs) = poll_until("the task done", SERVE_DEADLINE, || {
        sender.drain();
        let state = state(world, task);
        (state.0 == "done").then_some(state)
    });
    assert_eq!(reason, format!("pull request #{pull} was merged"));
    poll_until(
        "the issue closed, the worktree removed",
        SERVE_DEADLINE,
        || {
            sender.drain();
            let closed = world.fake.issue(REPO, issue)?.state == "closed";
            (closed && !worktree.exists()).then_some(())
        },
    );
    runs
}

fn is_ancestor(bare: &std::path::Path, ancestor: &str, descendant: &str) -> bool {
    Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args(["merge-base", "--is-ancestor", ancestor, descendant])
        .status()
        .unwrap()
        .success()
}

#[test]
fn a_pull_request_conflicting_with_its_base_gets_the_base_merged_and_resolved_then_lands() {
    let world = World::new("auto_merge = \"merge\"\nround_limit = 3\n");
    let fake = &world.fake;
    let (issue, serve, sender, task, pull) =
        world.start_with("@write CHANGES.md\nfrom the task\n@end", &[]);
    let head = world.settled_head(&sender, task, pull);
    let branch = fake.pull(REPO, pull).unwrap().head;

    // The base moves on with the same file: the pull request conflicts (the fake asks git). The
    // base's text is what sim resolves the conflict with once it reads the markers.
    let base = fake.commit_files(
        REPO,
        "main",
        &[(
            "CHANGES.md",
            "@write CHANGES.md\nfrom the base and the task\n@end\n",
        )],
        "the base changes the same line",
    );
    let (attempt, text) = world.run_holding(&sender, task, "CHANGES.md now reads");
    assert!(
        text.contains("conflicted with its base branch `main`") && text.contains("- CHANGES.md"),
        "the prompt names the base and lists the conflicted file"
    );
    assert!(text.contains("<<<<<<<"), "the markers are in the prompt");

    // The follow-up's commit is pushed: the base is its ancestor, the old head too (a
    // fast-forward), and the conflict is resolved.
    let resolved = world.settled_head(&sender, task, pull);
    assert_ne!(resolved, head);
    let bare = fake.bare_path(REPO);
    assert!(is_ancestor(&bare, &base, &resolved), "the base is merged");
    assert!(is_ancestor(&bare, &head, &resolved), "a fast-forward");
    assert_eq!(
        fake.file_at(REPO, &branch, "CHANGES.md").as_deref(),
        Some("from the base and the task\n")
    );
    assert_eq!(
        world
            .home
            .query_int(&format!("SELECT COUNT(*) FROM runs WHERE task_id = {task}")),
        i64::from(attempt),
        "one conflict follow-up"
    );

    // Mergeable now: approved and green, it is merged and the issue closed.
    approve_green(fake, &resolved, pull);
    poll_until("the pull request merged", SERVE_DEADLINE, || {
        sender.drain();
        let merged = fake.pull(REPO, pull)?.merged;
        let closed = fake.issue(REPO, issue)?.state == "closed";
        (merged && closed).then_some(())
    });
    assert!(is_ancestor(
        &bare,
        &base,
        &fake.branch_tip(REPO, "main").unwrap()
    ));
    assert_eq!(world.home.task_status(task), "done");
    stop(serve);
}

#[test]
fn a_pull_request_merged_during_a_follow_up_run_cancels_it_and_finishes_the_task() {
    let world = World::new("round_limit = 3\n");
    let (fake, home) = (&world.fake, &world.home);
    let (issue, serve, sender, task, pull) = world.start();
    let head = world.settled_head(&sender, task, pull);
    let worktree = workspace_of(&home.run_dir(task, 1));

    // A failing check whose log keeps sim busy: the follow-up runs for minutes.
    fake.add_check_run(
        REPO,
        &head,
        CheckRunSpec::completed("slow", "failure").with_output("slow", "", "@sleep 600000"),
    );
    poll_until("the follow-up running", SERVE_DEADLINE, || {
        sender.drain();
        let (status, _, runs) = state(&world, task);
        (status == "running" && runs.len() == 2).then_some(())
    });

    let runs = merged_by_hand_finishes(&world, &sender, (task, issue, pull), &worktree);
    assert_eq!(
        runs[1], "cancelled",
        "the follow-up was cancelled: {runs:?}"
    );
    // It stays done: no run starts after the merge.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(state(&world, task).2.len(), 2);
    assert_eq!(home.task_status(task), "done");
    stop(serve);
}

#[test]
fn a_pull_request_merged_while_its_task_needs_review_finishes_the_task() {
    let world = World::new("round_limit = 1\n");
    let (fake, home) = (&world.fake, &world.home);
    let (issue, serve, sender, task, pull) = world.start();
    // Two rounds of review comments: the second is past the round limit.
    for round in 1..=2 {
        world.settled_head(&sender, task, pull);
        fake.add_review_comment(
            REPO,
            pull,
            None,
            "alice",
            ("NOTES.md", 1),
            &format!("Round {round}."),
        );
        if round == 1 {
            world.run_holding(&sender, task, "Round 1.");
        }
    }
    let worktree = workspace_of(&home.run_dir(task, 1));
    poll_until("the task in needs_review", SERVE_DEADLINE, || {
        sender.drain();
        (home.task_status(task) == "needs_review").then_some(())
    });

    merged_by_hand_finishes(&world, &sender, (task, issue, pull), &worktree);
    stop(serve);
}
