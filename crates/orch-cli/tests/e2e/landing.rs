//! Landing results without a forge: `orch task diff`, `orch task merge` (merge commit, squash,
//! rebase; refusals that leave the checkout untouched), `orch task apply`, and copy mode's
//! changes (`patch.diff`, copying back, the home never copied, the size limit).

use std::path::Path;

use crate::support::{read_text, task_events, Home, Repo};

/// One task whose `sim` step writes `file` with `content` (and commits nothing itself; orch's
/// auto-commit does).
fn write_task(name: &str, file: &str, content: &str) -> String {
    format!(
        r#"name: {name}
tasks:
  - id: work
    title: Write {file}
    steps:
      - name: edit
        agent: sim
        prompt: |
          Edit.
          @write {file}
          {content}
          @end
"#
    )
}

/// Submit one task writing `file` in `project`, run it to the end, and return its id.
fn run_one(home: &Home, project: &Path, file: &str, content: &str) -> i64 {
    let ids = home.submit(
        &format!("w{}", rand_suffix()),
        &write_task("land", file, content),
        project,
    );
    home.serve_until_idle(1);
    let id = ids["work"];
    assert_eq!(home.task_status(id), "done", "{:#}", home.task(id));
    id
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// The user commits `file` with `content` in the checkout.
fn commit_file(repo: &Repo, file: &str, content: &str) {
    std::fs::write(repo.path().join(file), content).unwrap();
    repo.git(&["add", file]);
    repo.git(&["commit", "-q", "-m", &format!("the user's {file}")]);
}

/// The checkout's state that a refused landing must leave as it was.
fn checkout_state(repo: &Repo) -> (String, String, bool) {
    (
        repo.head(),
        repo.status(),
        repo.path().join(".git/MERGE_HEAD").exists(),
    )
}

#[test]
fn diff_shows_the_change_and_get_shows_the_branch_and_head() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hello\n")]);
    let id = run_one(&home, repo.path(), "notes.txt", "from the task");

    let diff = home.run(&["task", "diff", &id.to_string()]);
    diff.expect_code(0, "orch task diff");
    assert!(
        diff.stdout.contains("diff --git a/notes.txt b/notes.txt")
            && diff.stdout.contains("+from the task"),
        "{}",
        diff.stdout
    );
    let names = home.run(&["task", "diff", &id.to_string(), "--name-only"]);
    assert_eq!(names.stdout.trim(), "notes.txt");

    let task = home.task(id);
    let branch = task["branch"]["name"].as_str().unwrap_or_default();
    assert!(branch.starts_with(&format!("orch/{id}-")), "{task:#}");
    let head = task["branch"]["head"].as_str().unwrap_or_default();
    assert_eq!(head, repo.git(&["rev-parse", branch]));
    let text = home.run(&["task", "get", &id.to_string()]);
    assert!(
        text.stdout
            .contains(&format!("branch:   {branch} (head {head})")),
        "{}",
        text.stdout
    );
}

#[test]
fn merge_lands_the_branch_as_a_merge_commit_a_squash_or_a_rebase() {
    for mode in ["merge", "squash", "rebase"] {
        let home = Home::new();
        let repo = Repo::new(&[("README.md", "hello\n")]);
        let id = run_one(&home, repo.path(), "notes.txt", "from the task");
        // The checkout moved on meanwhile, in another file.
        commit_file(&repo, "other.txt", "user\n");
        let before = repo.head();

        let mut args = vec!["task", "merge"];
        let id_text = id.to_string();
        args.push(&id_text);
        let flag = format!("--{mode}");
        if mode != "merge" {
            args.push(&flag);
        }
        args.push("--json");
        let landed = home.json(&args);
        let commit = landed["commit"].as_str().unwrap().to_owned();
        assert_eq!(repo.head(), commit, "{mode}: the checkout's branch moved");
        assert_eq!(repo.git(&["symbolic-ref", "--short", "HEAD"]), "main");
        assert_eq!(
            read_text(&repo.path().join("notes.txt")).trim(),
            "from the task"
        );
        assert_eq!(read_text(&repo.path().join("other.txt")), "user\n");
        assert_eq!(repo.status(), "", "{mode}: the checkout is clean");
        let parents = repo.git(&["log", "-1", "--format=%P", &commit]);
        let parent_count = parents.split_whitespace().count();
        match mode {
            "merge" => assert_eq!(parent_count, 2, "a merge commit"),
            _ => assert_eq!(parent_count, 1, "{mode}: one parent"),
        }
        assert!(repo
            .git(&["merge-base", "--is-ancestor", &before, &commit])
            .is_empty());
        if mode == "squash" {
            let subject = repo.git(&["log", "-1", "--format=%s", &commit]);
            assert_eq!(subject, "Write notes.txt");
        }
        let task = home.task(id);
        let merged = task_events(&task, "merged");
        assert_eq!(merged.len(), 1, "{task:#}");
        assert_eq!(merged[0]["data"]["commit"], commit.as_str());
        assert_eq!(task["task"]["status"], "done", "no status change");

        // Landing again changes nothing and records nothing more.
        let again = home.json(&["task", "merge", &id_text, "--json"]);
        assert_eq!(again["already"], true, "{again}");
        assert_eq!(repo.head(), commit);
        assert_eq!(task_events(&home.task(id), "merged").len(), 1);
        home.assert_consistent(mode);
    }
}

#[test]
fn merge_into_another_branch_leaves_the_checkout_alone() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hello\n")]);
    repo.git(&["branch", "release"]);
    let id = run_one(&home, repo.path(), "notes.txt", "from the task");
    let head = repo.head();
    let landed = home.json(&[
        "task",
        "merge",
        &id.to_string(),
        "--into",
        "release",
        "--json",
    ]);
    assert_eq!(
        repo.git(&["rev-parse", "release"]),
        landed["commit"].as_str().unwrap()
    );
    assert_eq!(repo.head(), head);
    assert!(!repo.path().join("notes.txt").exists());
    assert_eq!(repo.status(), "");
}

/// Run a task writing `notes.txt`, put `content` in the checkout's `file` (uncommitted), and
/// check that `orch task merge <id> <flags>` is refused naming `needle` and `file`, leaving the
/// checkout and the file exactly as they were and recording nothing.
fn check_refused_over_a_local_file(file: &str, content: &str, flags: &[&str], needle: &str) {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hello\n")]);
    let id = run_one(&home, repo.path(), "notes.txt", "from the task");
    std::fs::write(repo.path().join(file), content).unwrap();
    let before = checkout_state(&repo);
    let id_text = id.to_string();
    let mut args = vec!["task", "merge", id_text.as_str()];
    args.extend_from_slice(flags);
    let refused = home.run(&args);
    refused.expect_code(1, needle);
    assert!(
        refused.stderr.contains(needle) && refused.stderr.contains(file),
        "{}",
        refused.stderr
    );
    assert_eq!(checkout_state(&repo), before);
    assert_eq!(read_text(&repo.path().join(file)), content);
    assert!(task_events(&home.task(id), "merged").is_empty());
}

#[test]
fn a_dirty_checkout_is_refused_and_left_untouched() {
    check_refused_over_a_local_file(
        "README.md",
        "edited by the user\n",
        &[],
        "uncommitted changes",
    );
}

#[test]
fn a_conflicting_merge_is_refused_and_the_checkout_is_untouched() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hello\n")]);
    let id = run_one(&home, repo.path(), "notes.txt", "from the task");
    commit_file(&repo, "notes.txt", "from the user\n");
    let before = checkout_state(&repo);
    for flag in [None, Some("--squash"), Some("--rebase")] {
        let id_text = id.to_string();
        let mut args = vec!["task", "merge", id_text.as_str()];
        args.extend(flag);
        let refused = home.run(&args);
        refused.expect_code(1, "a conflicting merge");
        assert!(
            refused.stderr.contains("conflicts") && refused.stderr.contains("notes.txt"),
            "{}",
            refused.stderr
        );
        assert_eq!(checkout_state(&repo), before, "{flag:?}");
        assert_eq!(read_text(&repo.path().join("notes.txt")), "from the user\n");
    }

    // `apply` of a patch that does not apply is refused too, changing nothing.
    let refused = home.run(&["task", "apply", &id.to_string()]);
    refused.expect_code(1, "an apply that does not apply");
    assert!(
        refused.stderr.contains("does not apply"),
        "{}",
        refused.stderr
    );
    assert_eq!(checkout_state(&repo), before);
}

#[test]
fn apply_changes_the_working_tree_without_committing() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hello\n")]);
    let id = run_one(&home, repo.path(), "notes.txt", "from the task");
    let head = repo.head();
    let applied = home.json(&["task", "apply", &id.to_string(), "--json"]);
    assert_eq!(applied["files"], serde_json::json!(["notes.txt"]));
    assert_eq!(repo.head(), head, "no commit");
    assert_eq!(
        read_text(&repo.path().join("notes.txt")).trim(),
        "from the task"
    );
    assert_eq!(repo.status(), "?? notes.txt");
}

#[test]
fn merge_and_diff_refuse_through_a_remote_server_or_for_an_unknown_task() {
    let home = Home::new();
    let unknown = home.run(&["task", "merge", "99"]);
    unknown.expect_code(2, "an unknown task");
    assert!(unknown.stderr.contains("no task 99"), "{}", unknown.stderr);
    let remote = home.run(&["--server", "http://127.0.0.1:9", "task", "merge", "1"]);
    remote.expect_code(2, "merge through --server");
    assert!(
        remote.stderr.contains("not supported through the HTTP API"),
        "{}",
        remote.stderr
    );
}

/// A plain directory (copy mode) with one file.
fn plain_project(extra_config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".orch.toml"),
        format!("non_git = \"copy\"\n{extra_config}"),
    )
    .unwrap();
    std::fs::write(dir.path().join("original.txt"), "original\n").unwrap();
    std::fs::write(dir.path().join("keep.txt"), "keep\n").unwrap();
    dir
}

fn copy_task(file: &str) -> String {
    format!(
        r#"name: copy
tasks:
  - id: work
    title: Edit a plain directory
    steps:
      - name: edit
        agent: sim
        prompt: |
          Edit.
          @write {file}
          new
          @end
          @replace original.txt original => changed
"#
    )
}

/// A home, a plain project (copy mode) with `extra_config`, and the id of a task that edited
/// its copy, run to the end.
fn copy_task_done(extra_config: &str) -> (Home, tempfile::TempDir, i64) {
    let home = Home::new();
    let project = plain_project(extra_config);
    let ids = home.submit("copy", &copy_task("made-by-task.txt"), project.path());
    home.serve_until_idle(1);
    let id = ids["work"];
    (home, project, id)
}

#[test]
fn copy_mode_reports_its_patch_and_merge_copies_it_back() {
    let (home, project, id) = copy_task_done("");
    assert_eq!(home.task_status(id), "done");

    let patch = read_text(&home.run_dir(id, 1).join("patch.diff"));
    assert!(
        patch.contains("diff --git a/made-by-task.txt b/made-by-task.txt"),
        "{patch}"
    );
    assert!(
        patch.contains("-original") && patch.contains("+changed"),
        "{patch}"
    );
    let result = crate::support::read_json(&home.run_dir(id, 1).join("result.json"));
    assert_eq!(
        result["changed_files"],
        serde_json::json!(["made-by-task.txt", "original.txt"])
    );
    let diff = home.run(&["task", "diff", &id.to_string()]);
    assert!(diff.stdout.contains("+changed"), "{}", diff.stdout);

    let landed = home.json(&["task", "merge", &id.to_string(), "--json"]);
    assert_eq!(
        landed["files"],
        serde_json::json!(["made-by-task.txt", "original.txt"])
    );
    assert_eq!(read_text(&project.path().join("made-by-task.txt")), "new\n");
    assert_eq!(
        read_text(&project.path().join("original.txt")).trim(),
        "changed"
    );
    assert_eq!(read_text(&project.path().join("keep.txt")), "keep\n");
    assert_eq!(task_events(&home.task(id), "merged").len(), 1);
}

#[test]
fn copy_mode_refuses_to_copy_back_a_file_changed_meanwhile_in_the_original() {
    let (home, project, id) = copy_task_done("");
    std::fs::write(project.path().join("original.txt"), "the user's edit\n").unwrap();
    let refused = home.run(&["task", "merge", &id.to_string()]);
    refused.expect_code(1, "a file changed meanwhile");
    assert!(
        refused.stderr.contains("original.txt") && refused.stderr.contains("changed in"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        read_text(&project.path().join("original.txt")),
        "the user's edit\n"
    );
    assert!(
        !project.path().join("made-by-task.txt").exists(),
        "nothing copied back"
    );
}

#[test]
fn a_project_directory_containing_the_home_is_copied_without_it() {
    let project = plain_project("");
    let home = Home::inside(project.path());
    let home_dir = home.path().to_path_buf();
    let home_name = home_dir.file_name().unwrap().to_string_lossy().into_owned();
    let ids = home.submit("copy", &copy_task("made-by-task.txt"), project.path());
    home.serve_until_idle(1);
    let id = ids["work"];
    assert_eq!(home.task_status(id), "done", "{:#}", home.task(id));
    let copy = home_dir.join("worktrees/copies").join(id.to_string());
    assert!(copy.join("keep.txt").is_file());
    assert!(!copy.join(&home_name).exists(), "the home was copied");
    let patch = read_text(&home.run_dir(id, 1).join("patch.diff"));
    assert!(!patch.contains(&home_name), "{patch}");
    assert!(patch.contains("made-by-task.txt"), "{patch}");
}

#[test]
fn a_project_larger_than_the_copy_limit_is_refused_with_its_size() {
    let home = Home::new();
    let project = plain_project("copy_max_size = \"1KiB\"\n");
    std::fs::write(project.path().join("big.bin"), vec![b'x'; 4096]).unwrap();
    let ids = home.submit("copy", &copy_task("made-by-task.txt"), project.path());
    home.serve_until_idle(1);
    let id = ids["work"];
    let task = home.task(id);
    assert_ne!(task["task"]["status"], "done", "{task:#}");
    let reason = task["task"]["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("4.1 KiB")
            && reason.contains("1.0 KiB")
            && reason.contains("copy_max_size"),
        "{reason}"
    );
}

const FINAL_MERGE: &str = r#"name: chain
merge: {mode: squash}
tasks:
  - id: plan
    title: Write the plan
    steps:
      - name: edit
        agent: sim
        prompt: |
          Plan.
          @write plan.txt
          the plan
          @end
  - id: last
    title: Write the result
    needs: [plan]
    steps:
      - name: edit
        agent: sim
        prompt: |
          Do it.
          @write result.txt
          the result
          @end
"#;

#[test]
fn a_workflows_final_task_is_merged_once_even_when_the_daemon_restarts() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hello\n")]);
    let ids = home.submit("chain", FINAL_MERGE, repo.path());
    home.serve_until_idle(2);
    let last = ids["last"];
    assert_eq!(home.task_status(last), "done");
    let merged = task_events(&home.task(last), "merged").len();
    assert_eq!(merged, 1, "{:#}", home.task(last));
    assert!(
        task_events(&home.task(ids["plan"]), "merged").is_empty(),
        "only the final task"
    );
    assert_eq!(repo.git(&["log", "-1", "--format=%s"]), "Write the result");
    assert_eq!(
        read_text(&repo.path().join("result.txt")).trim(),
        "the result"
    );
    assert_eq!(repo.status(), "");
    let head = repo.head();

    // A restarted daemon reads the log again: nothing is landed or recorded twice.
    home.serve_until_idle(1);
    assert_eq!(repo.head(), head);
    assert_eq!(task_events(&home.task(last), "merged").len(), 1);
    home.assert_consistent("after the automatic merge");
}

#[test]
fn a_refused_automatic_merge_is_recorded_on_the_task_which_stays_done() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hello\n")]);
    std::fs::write(repo.path().join("README.md"), "uncommitted\n").unwrap();
    let ids = home.submit("chain", FINAL_MERGE, repo.path());
    home.serve_until_idle(2);
    let last = ids["last"];
    let task = home.task(last);
    assert_eq!(task["task"]["status"], "done");
    let refused = task_events(&task, "merge_refused");
    assert_eq!(refused.len(), 1, "{task:#}");
    let reason = refused[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("uncommitted changes"), "{reason}");
    assert!(task_events(&task, "merged").is_empty());
    assert_eq!(read_text(&repo.path().join("README.md")), "uncommitted\n");

    home.serve_until_idle(1);
    assert_eq!(
        task_events(&home.task(last), "merge_refused").len(),
        1,
        "reported once"
    );
    home.assert_consistent("after the refused merge");
}

#[test]
fn a_workflow_merge_with_several_final_tasks_is_refused_at_submit() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hello\n")]);
    let file = home.write(
        "two.yml",
        r#"name: two
merge: {into: main}
tasks:
  - id: a
    title: A
    steps: [{name: s, exec: [{argv: [true]}]}]
  - id: b
    title: B
    steps: [{name: s, exec: [{argv: [true]}]}]
"#,
    );
    let refused = home.run(&[
        "run",
        file.to_str().unwrap(),
        "--project",
        repo.path().to_str().unwrap(),
    ]);
    refused.expect_code(2, "a workflow merge with two final tasks");
    assert!(
        refused.stderr.contains("`a`, `b` are all final") && refused.stderr.contains("two.yml:2"),
        "{}",
        refused.stderr
    );
}

#[test]
fn diff_and_get_go_through_the_daemons_api_and_merge_stays_local() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hello\n")]);
    let id = run_one(&home, repo.path(), "notes.txt", "from the task");
    let local = home.run(&["task", "diff", &id.to_string()]).stdout;
    let local_get = home.task(id);

    let serve = home.serve(&["--workers", "0"]);
    let addr = crate::support::poll_until("serve.addr", crate::support::SERVE_DEADLINE, || {
        let addr = std::fs::read_to_string(home.path().join("serve.addr")).ok()?;
        home.path().join("token").exists().then_some(())?;
        Some(addr.trim().to_owned()).filter(|a| !a.is_empty())
    });
    let url = format!("http://{addr}");
    let remote = home.run(&["--server", &url, "task", "diff", &id.to_string()]);
    remote.expect_code(0, "orch task diff through the API");
    assert_eq!(remote.stdout, local);
    let remote_get = home.json(&["--server", &url, "task", "get", &id.to_string(), "--json"]);
    assert_eq!(remote_get["branch"], local_get["branch"]);
    let missing = home.run(&["--server", &url, "task", "diff", "99"]);
    missing.expect_code(2, "the diff of an unknown task");

    // With the daemon running, merge still works on the home's store and checkout.
    let landed = home.json(&["task", "merge", &id.to_string(), "--json"]);
    assert_eq!(repo.head(), landed["commit"].as_str().unwrap());
    serve.kill();
}

#[test]
fn an_untracked_file_in_the_way_is_refused_and_kept() {
    check_refused_over_a_local_file(
        "notes.txt",
        "the user's own, untracked\n",
        &["--squash"],
        "would overwrite",
    );
}
