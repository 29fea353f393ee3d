//! `orch demo` end to end, `orch task logs` (with and without `--follow`) and `orch gc` on real
//! runs.

use std::time::Duration;

use crate::support::{files_under, git, poll_until, Home, Repo, SERVE_DEADLINE};

#[test]
fn the_demo_runs_every_task_to_done_and_its_logs_show_the_command_output() {
    let home = Home::new();
    let dir = tempfile::tempdir().expect("create the demo directory");
    let demo_dir = dir.path().to_str().expect("temp paths are UTF-8");
    let demo = home
        .spawn(&["demo", "--dir", demo_dir])
        .finish(SERVE_DEADLINE);
    demo.expect_code(0, "orch demo");
    let rows: Vec<Vec<&str>> = demo
        .stdout
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|words| words.first().is_some_and(|w| w.parse::<u32>().is_ok()))
        .collect();
    let keys: Vec<&str> = rows.iter().map(|row| row[1]).collect();
    assert_eq!(
        keys,
        ["plan", "build", "test", "review", "release"],
        "{}",
        demo.stdout
    );
    for row in &rows {
        assert_eq!(row[2], "done", "{}", demo.stdout);
    }
    // `build` lists what it built.
    let logs = home.run(&["task", "logs", "2"]);
    logs.expect_code(0, "orch task logs 2");
    assert!(
        logs.stdout.contains("==> steps/build/cmd-3.stdout.log <==")
            && logs.stdout.contains("greeting.txt"),
        "{}",
        logs.stdout
    );
    home.assert_consistent("after the demo");
}

#[test]
fn following_the_logs_of_a_running_task_prints_its_output_and_stops_when_it_is_done() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let ids = home.submit(
        "follow",
        "name: follow\ntasks:\n  - id: talk\n    title: Talk slowly\n    steps:\n      - name: first\n        exec:\n          - argv: [echo, first-output]\n          - argv: [sleep, \"2\"]\n      - name: last\n        exec:\n          - argv: [echo, last-output]\n",
        repo.path(),
    );
    let id = ids["talk"].to_string();
    let serve = home.serve(&[
        "--workers",
        "1",
        "--lease",
        "2s",
        "--grace",
        "1s",
        "--exit-when-idle",
    ]);
    let logs = home.run_dir(ids["talk"], 1).join("logs.txt");
    poll_until("the sleep to start", SERVE_DEADLINE, || {
        std::fs::read_to_string(&logs)
            .ok()
            .filter(|text| text.contains("$ sleep 2"))
            .map(drop)
    });

    let mut follow = home.spawn(&["task", "logs", &id, "--follow"]);
    follow.wait_for_line("first-output", Duration::from_secs(10));
    assert_eq!(
        home.task_status(ids["talk"]),
        "running",
        "the first output was printed while the task ran"
    );
    let followed = follow.finish(SERVE_DEADLINE);
    followed.expect_code(0, "orch task logs --follow");
    assert!(
        followed.stdout.contains("last-output"),
        "{}",
        followed.stdout
    );
    assert_eq!(home.task_status(ids["talk"]), "done");
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve --exit-when-idle");
}

#[test]
fn gc_removes_worktrees_of_merged_or_old_finished_tasks_and_keeps_their_branches() {
    let home = Home::new();
    let dir = tempfile::tempdir().expect("create the demo directory");
    let demo_dir = dir.path().to_str().expect("temp paths are UTF-8");
    home.spawn(&["demo", "--dir", demo_dir])
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch demo");
    let worktrees = |home: &Home| -> usize {
        files_under(&home.path().join("worktrees"))
            .iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "README.md"))
            .count()
    };
    assert_eq!(worktrees(&home), 5, "one worktree per demo task");

    // Nothing is old yet, and only the tasks that changed nothing count as merged.
    let dry = home.json(&["gc", "--dry-run", "--json"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(worktrees(&home), 5, "a dry run removes nothing");
    let first = home.json(&["gc", "--json"]);
    let removed_first = first["removed"].as_array().expect("removed").len();
    assert_eq!(
        removed_first,
        dry["removed"].as_array().expect("removed").len()
    );
    for entry in first["removed"].as_array().expect("removed") {
        assert_eq!(entry["reason"], "its branch is merged", "{first}");
    }
    assert_eq!(worktrees(&home), 5 - removed_first);

    // With no age limit every finished task's worktree goes; the branches stay.
    let all = home.json(&["gc", "--older-than", "0s", "--json"]);
    assert_eq!(
        all["removed"].as_array().expect("removed").len(),
        5 - removed_first,
        "{all}"
    );
    assert_eq!(worktrees(&home), 0);
    let branches = git(&dir.path().join("repo"), &["branch", "--list", "orch/*"]);
    assert_eq!(branches.lines().count(), 5, "{branches}");
    home.assert_consistent("after gc");
}

/// The repository the demo announced on stderr (`orch demo: repository <dir>, home ...`).
fn demo_repository(stderr: &str) -> std::path::PathBuf {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("orch demo: repository "))
        .unwrap_or_else(|| panic!("no repository announced:\n{stderr}"));
    let (repo, _) = line
        .split_once(", home ")
        .expect("`, home` follows the repository");
    std::path::PathBuf::from(repo)
}

#[test]
fn the_demo_removes_its_throwaway_directory_unless_kept() {
    let home = Home::new();
    let demo = home.spawn(&["demo"]).finish(SERVE_DEADLINE);
    demo.expect_code(0, "orch demo");
    let repo = demo_repository(&demo.stderr);
    let root = repo
        .parent()
        .expect("the repository is in the demo's directory");
    assert!(!root.exists(), "{} is left behind", root.display());
    assert!(
        demo.stdout.contains("removed the demo's directory"),
        "{}",
        demo.stdout
    );

    let kept = home.spawn(&["demo", "--keep"]).finish(SERVE_DEADLINE);
    kept.expect_code(0, "orch demo --keep");
    let repo = demo_repository(&kept.stderr);
    assert!(
        repo.join("demo.yml").is_file(),
        "{} is gone",
        repo.display()
    );
    std::fs::remove_dir_all(repo.parent().unwrap()).unwrap();
}

#[test]
fn gc_removes_the_run_bundles_of_old_finished_tasks_but_not_of_tasks_needing_review() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let ids = home.submit(
        "bundles",
        "tasks:\n\
         \x20 - id: fine\n    title: Fine\n    steps:\n      - exec: [{argv: [\"true\"]}]\n\
         \x20 - id: slow\n    title: Slow\n    timeout: 1s\n    retry: {max_attempts: 1}\n    steps:\n      - exec: [{argv: [sleep, \"5\"]}]\n",
        repo.path(),
    );
    home.serve_until_idle(2);
    assert_eq!(home.task_status(ids["fine"]), "done");
    assert_eq!(home.task_status(ids["slow"]), "needs_review");
    let fine = home.path().join("runs").join(ids["fine"].to_string());
    let slow = home.path().join("runs").join(ids["slow"].to_string());
    assert!(fine.is_dir() && slow.is_dir());

    let young = home.json(&["gc", "--json"]);
    assert_eq!(young["bundles_removed"], serde_json::json!([]), "{young}");
    let dry = home.json(&["gc", "--bundles-older-than", "0s", "--dry-run", "--json"]);
    assert_eq!(
        dry["bundles_removed"].as_array().map(Vec::len),
        Some(1),
        "{dry}"
    );
    assert!(fine.is_dir(), "a dry run removes nothing");
    let done = home.json(&["gc", "--bundles-older-than", "0s", "--json"]);
    assert_eq!(done["bundles_removed"][0]["task"], ids["fine"], "{done}");
    assert!(!fine.exists(), "the done task's bundles are removed");
    assert!(slow.is_dir(), "the needs_review task keeps its bundles");
}
