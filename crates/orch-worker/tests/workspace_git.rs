//! Workspaces on real git repositories in temporary directories: creation from the right base,
//! reuse and recovery on retries, concurrent preparation, diffs, commits, removal and merge
//! detection, and that the main checkout is never touched.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use orch_worker::project::NonGitMode;
use orch_worker::workspace::{Workspace, WorkspaceError, WorkspaceRequest};

/// A repository with one commit (`README.md`, `keep.txt`, `gone.txt`) on `main`, and an orch
/// home beside it (not inside it, as with the default home).
struct Fixture {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    worktrees_root: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let fixture = Fixture::without_commits();
        write(&fixture.repo.join("README.md"), "hello\n");
        write(&fixture.repo.join("keep.txt"), "keep\n");
        write(&fixture.repo.join("gone.txt"), "gone\n");
        git(&fixture.repo, &["add", "-A"]);
        git(&fixture.repo, &["commit", "-q", "-m", "initial"]);
        fixture
    }

    fn without_commits() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("project");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "-q"]);
        git(&repo, &["symbolic-ref", "HEAD", "refs/heads/main"]);
        git(&repo, &["config", "user.name", "Test"]);
        git(&repo, &["config", "user.email", "test@example.invalid"]);
        git(&repo, &["config", "commit.gpgSign", "false"]);
        let worktrees_root = dir.path().join("home").join("worktrees");
        Fixture {
            _dir: dir,
            repo,
            worktrees_root,
        }
    }

    fn request(&self, task_id: i64, title: &str) -> WorkspaceRequest {
        WorkspaceRequest {
            project_dir: self.repo.clone(),
            worktrees_root: self.worktrees_root.clone(),
            task_id,
            title: title.to_string(),
            base_branch: None,
            non_git: NonGitMode::Fail,
            copy_max_bytes: orch_worker::workspace::DEFAULT_COPY_MAX_BYTES,
            // One orch database per home in these tests: a task is its id and creation time.
            task_created_at: created_at_for(&self.worktrees_root),
            start: orch_worker::workspace::StartRequest::default(),
        }
    }

    /// Everything a user would notice about the main checkout.
    fn main_checkout_state(&self) -> (String, String, String) {
        (
            git(&self.repo, &["rev-parse", "HEAD"]),
            git(&self.repo, &["symbolic-ref", "HEAD"]),
            git(
                &self.repo,
                &["status", "--porcelain=v1", "--untracked-files=all"],
            ),
        )
    }

    /// Commit a file on `main` in the main checkout, as the user would.
    fn advance_main(&self, file: &str) -> String {
        write(&self.repo.join(file), "later\n");
        git(&self.repo, &["add", file]);
        git(&self.repo, &["commit", "-q", "-m", "later work on main"]);
        git(&self.repo, &["rev-parse", "HEAD"])
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

fn git_succeeds(dir: &Path, args: &[&str]) -> bool {
    Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
        .status
        .success()
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
}

fn parts(workspace: &Workspace) -> (PathBuf, String, String) {
    match workspace {
        Workspace::Git {
            path,
            branch,
            base_commit,
            ..
        } => (path.clone(), branch.clone(), base_commit.clone()),
        Workspace::Copy { .. } => panic!("expected a git worktree, got {workspace:?}"),
    }
}

fn base_record(path: &Path) -> PathBuf {
    let task = path.file_name().unwrap().to_string_lossy().into_owned();
    path.parent().unwrap().join(format!("{task}.base"))
}

#[tokio::test]
async fn a_new_worktree_is_on_the_task_branch_from_head_and_the_main_checkout_is_untouched() {
    let fixture = Fixture::new();
    let before = fixture.main_checkout_state();

    let workspace = Workspace::prepare(&fixture.request(7, "Fix the login bug"))
        .await
        .unwrap();

    let (path, branch, base_commit) = parts(&workspace);
    assert_eq!(branch, "orch/7-fix-the-login-bug");
    assert_eq!(base_commit, before.0);
    assert_eq!(workspace.path(), path);
    assert!(path.starts_with(fixture.worktrees_root.canonicalize().unwrap()));
    assert_eq!(path.file_name().unwrap(), "7");
    assert_eq!(
        git(&path, &["symbolic-ref", "HEAD"]),
        "refs/heads/orch/7-fix-the-login-bug"
    );
    assert_eq!(git(&path, &["rev-parse", "HEAD"]), base_commit);
    assert_eq!(
        std::fs::read_to_string(path.join("README.md")).unwrap(),
        "hello\n"
    );
    assert_eq!(git(&path, &["status", "--porcelain"]), "");
    assert_eq!(fixture.main_checkout_state(), before);
    // The branch starts without an upstream, so nothing is pushed anywhere by accident.
    assert!(!git_succeeds(
        &path,
        &["rev-parse", "--abbrev-ref", "@{upstream}"]
    ));
}

#[tokio::test]
async fn a_configured_base_branch_is_used_instead_of_head() {
    let fixture = Fixture::new();
    let initial = git(&fixture.repo, &["rev-parse", "HEAD"]);
    git(&fixture.repo, &["branch", "release"]);
    fixture.advance_main("main-only.txt");
    let mut request = fixture.request(3, "backport");
    request.base_branch = Some("release".to_string());

    let workspace = Workspace::prepare(&request).await.unwrap();

    let (path, _, base_commit) = parts(&workspace);
    assert_eq!(base_commit, initial);
    assert!(!path.join("main-only.txt").exists());
    assert_eq!(
        git(&fixture.repo, &["symbolic-ref", "HEAD"]),
        "refs/heads/main"
    );
}

#[tokio::test]
async fn an_unknown_base_branch_is_a_clear_error() {
    let fixture = Fixture::new();
    let mut request = fixture.request(3, "anything");
    request.base_branch = Some("no-such-branch".to_string());

    let error = Workspace::prepare(&request).await.unwrap_err();

    let message = error.to_string();
    assert!(matches!(error, WorkspaceError::Git { .. }), "{error:?}");
    assert!(
        message.contains("`no-such-branch` does not name a commit"),
        "{message}"
    );
    assert!(message.contains("base_branch"), "{message}");
}

#[tokio::test]
async fn a_repository_without_commits_asks_for_a_first_commit() {
    let fixture = Fixture::without_commits();

    let error = Workspace::prepare(&fixture.request(1, "first task"))
        .await
        .unwrap_err();

    let message = error.to_string();
    assert!(matches!(error, WorkspaceError::Git { .. }), "{error:?}");
    assert!(message.contains("no commits yet"), "{message}");
    assert!(message.contains("make a first commit"), "{message}");
}

#[tokio::test]
async fn diff_shows_edits_new_files_deletions_and_binaries_without_touching_the_index() {
    let fixture = Fixture::new();
    let workspace = Workspace::prepare(&fixture.request(2, "edit"))
        .await
        .unwrap();
    let path = workspace.path().to_path_buf();
    write(&path.join("README.md"), "hello\nworld\n");
    write(&path.join("new.txt"), "brand new content\n");
    std::fs::write(path.join("image.bin"), [0u8, 159, 146, 150, 0, 255]).unwrap();
    std::fs::remove_file(path.join("gone.txt")).unwrap();
    write(&path.join(".gitignore"), "ignored.log\n");
    write(&path.join("ignored.log"), "noise\n");
    let status_before = git(
        &path,
        &["status", "--porcelain=v1", "--untracked-files=all"],
    );

    let diff = String::from_utf8(workspace.diff().await.unwrap()).unwrap();

    assert!(
        diff.contains("diff --git a/README.md b/README.md"),
        "{diff}"
    );
    assert!(diff.contains("+world"), "{diff}");
    assert!(
        diff.contains("diff --git a/new.txt b/new.txt\nnew file mode 100644"),
        "{diff}"
    );
    assert!(diff.contains("+brand new content"), "{diff}");
    assert!(
        diff.contains("diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644"),
        "{diff}"
    );
    assert!(
        diff.contains("diff --git a/image.bin b/image.bin"),
        "{diff}"
    );
    assert!(diff.contains("GIT binary patch"), "{diff}");
    assert!(!diff.contains("b/ignored.log"), "{diff}");
    assert!(!diff.contains("keep.txt"), "{diff}");
    // What was untracked stays untracked and nothing got staged.
    assert_eq!(
        git(
            &path,
            &["status", "--porcelain=v1", "--untracked-files=all"]
        ),
        status_before
    );
    assert!(status_before.contains("?? new.txt"), "{status_before}");
    // The patch is a plain one: it applies to the base, which the main checkout still has.
    let patch = fixture.worktrees_root.join("patch.diff");
    write(&patch, &diff);
    git(
        &fixture.repo,
        &["apply", "--check", patch.to_str().unwrap()],
    );
}

#[tokio::test]
async fn diff_after_commit_all_still_shows_the_changes_against_the_base() {
    let fixture = Fixture::new();
    let workspace = Workspace::prepare(&fixture.request(4, "commit"))
        .await
        .unwrap();
    let (path, branch, base_commit) = parts(&workspace);
    write(&path.join("README.md"), "hello\ncommitted\n");
    write(&path.join("added.txt"), "added\n");
    std::fs::remove_file(path.join("gone.txt")).unwrap();
    let before = fixture.main_checkout_state();

    let commit = workspace
        .commit_all("orch: task 4")
        .await
        .unwrap()
        .expect("there were changes");
    write(&path.join("after.txt"), "uncommitted after the commit\n");
    let diff = String::from_utf8(workspace.diff().await.unwrap()).unwrap();

    assert_eq!(git(&path, &["rev-parse", "HEAD"]), commit);
    assert_eq!(
        git(
            &fixture.repo,
            &["rev-parse", &format!("refs/heads/{branch}")]
        ),
        commit
    );
    assert_eq!(git(&path, &["rev-parse", "HEAD^"]), base_commit);
    assert_eq!(
        git(&path, &["log", "-1", "--format=%an <%ae>%n%s"]),
        "orch <orch@localhost>\norch: task 4"
    );
    assert_eq!(git(&path, &["status", "--porcelain"]), "?? after.txt");
    assert!(diff.contains("+committed"), "{diff}");
    assert!(diff.contains("b/added.txt\nnew file mode"), "{diff}");
    assert!(diff.contains("b/gone.txt\ndeleted file mode"), "{diff}");
    assert!(diff.contains("+uncommitted after the commit"), "{diff}");
    assert_eq!(fixture.main_checkout_state(), before);
}

#[tokio::test]
async fn commit_all_with_nothing_changed_returns_none() {
    let fixture = Fixture::new();
    let workspace = Workspace::prepare(&fixture.request(5, "nothing"))
        .await
        .unwrap();

    let commit = workspace.commit_all("orch: nothing").await.unwrap();

    assert_eq!(commit, None);
    assert_eq!(workspace.diff().await.unwrap(), b"");
}

#[tokio::test]
async fn a_second_prepare_reuses_the_worktree_and_keeps_its_changes() {
    let fixture = Fixture::new();
    let request = fixture.request(6, "retry me");
    let first = Workspace::prepare(&request).await.unwrap();
    write(&first.path().join("work.txt"), "from attempt 1\n");
    first.commit_all("attempt 1").await.unwrap();
    write(
        &first.path().join("uncommitted.txt"),
        "also from attempt 1\n",
    );
    fixture.advance_main("moved-on.txt");

    let second = Workspace::prepare(&request).await.unwrap();

    assert_eq!(second, first);
    assert_eq!(
        std::fs::read_to_string(second.path().join("work.txt")).unwrap(),
        "from attempt 1\n"
    );
    assert!(second.path().join("uncommitted.txt").exists());
    assert!(!second.path().join("moved-on.txt").exists());
}

#[tokio::test]
async fn prepare_after_the_worktree_directory_was_deleted_recovers_the_branch_and_its_base() {
    let fixture = Fixture::new();
    let request = fixture.request(8, "survive a crash");
    let first = Workspace::prepare(&request).await.unwrap();
    write(
        &first.path().join("work.txt"),
        "committed before the crash\n",
    );
    let commit = first.commit_all("attempt 1").await.unwrap().unwrap();
    std::fs::remove_dir_all(first.path()).unwrap();
    fixture.advance_main("moved-on.txt");

    let second = Workspace::prepare(&request).await.unwrap();

    assert_eq!(second, first);
    assert_eq!(git(second.path(), &["rev-parse", "HEAD"]), commit);
    assert_eq!(git(second.path(), &["status", "--porcelain"]), "");
    assert!(second.path().join("work.txt").exists());
    let diff = String::from_utf8(second.diff().await.unwrap()).unwrap();
    assert!(diff.contains("+committed before the crash"), "{diff}");
    assert!(!diff.contains("moved-on.txt"), "{diff}");
}

#[tokio::test]
async fn a_stale_directory_in_the_worktree_place_is_replaced() {
    let fixture = Fixture::new();
    let request = fixture.request(9, "stale");
    let first = Workspace::prepare(&request).await.unwrap();
    std::fs::remove_dir_all(first.path()).unwrap();
    std::fs::create_dir(first.path()).unwrap();
    write(&first.path().join("junk.txt"), "not a worktree\n");

    let second = Workspace::prepare(&request).await.unwrap();

    assert_eq!(second, first);
    assert!(!second.path().join("junk.txt").exists());
    assert_eq!(
        git(second.path(), &["symbolic-ref", "--short", "HEAD"]),
        "orch/9-stale"
    );
    assert_eq!(git(second.path(), &["status", "--porcelain"]), "");
}

#[tokio::test]
async fn a_lost_base_record_is_rebuilt_from_the_merge_base() {
    let fixture = Fixture::new();
    let request = fixture.request(10, "lost record");
    let first = Workspace::prepare(&request).await.unwrap();
    write(&first.path().join("work.txt"), "work\n");
    first.commit_all("attempt 1").await.unwrap().unwrap();
    fixture.advance_main("moved-on.txt");
    let record = base_record(first.path());
    assert!(
        record.exists(),
        "the record sits beside the worktree at {}",
        record.display()
    );
    std::fs::remove_file(&record).unwrap();

    let second = Workspace::prepare(&request).await.unwrap();

    assert_eq!(second, first);
    let (_, branch, base_commit) = parts(&first);
    let rebuilt = std::fs::read_to_string(&record).unwrap();
    assert_eq!(
        rebuilt.lines().next().unwrap(),
        format!("{base_commit} {branch}")
    );
    assert!(rebuilt.contains("\nadmin "), "{rebuilt}");
}

#[tokio::test]
async fn a_worktree_switched_to_another_branch_is_refused_with_a_fix() {
    let fixture = Fixture::new();
    let request = fixture.request(11, "wander");
    let first = Workspace::prepare(&request).await.unwrap();
    git(first.path(), &["switch", "-q", "-c", "agent-made-this"]);

    let error = Workspace::prepare(&request).await.unwrap_err();

    let message = error.to_string();
    assert!(
        message.contains("`refs/heads/agent-made-this` checked out"),
        "{message}"
    );
    assert!(message.contains("switch orch/11-wander"), "{message}");
}

#[tokio::test]
async fn two_tasks_of_one_repository_prepared_at_once_both_succeed() {
    let fixture = Fixture::new();
    let (first, second) = (fixture.request(21, "left"), fixture.request(22, "right"));

    let (first, second) = tokio::join!(Workspace::prepare(&first), Workspace::prepare(&second));

    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(
        git(first.path(), &["symbolic-ref", "--short", "HEAD"]),
        "orch/21-left"
    );
    assert_eq!(
        git(second.path(), &["symbolic-ref", "--short", "HEAD"]),
        "orch/22-right"
    );
    assert_ne!(first.path(), second.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_of_one_repository_prepared_at_once_all_succeed() {
    let fixture = Fixture::new();
    let mut tasks = tokio::task::JoinSet::new();
    for task_id in 30..42 {
        let request = fixture.request(task_id, &format!("task {task_id}"));
        tasks.spawn(async move { (task_id, Workspace::prepare(&request).await) });
    }

    let mut prepared = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (task_id, result) = joined.unwrap();
        let workspace = result.unwrap_or_else(|e| panic!("task {task_id}: {e}"));
        let (path, branch, _) = parts(&workspace);
        assert_eq!(git(&path, &["symbolic-ref", "--short", "HEAD"]), branch);
        prepared.push(task_id);
    }

    assert_eq!(prepared.len(), 12);
    let listed = git(&fixture.repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(
        listed.matches("branch refs/heads/orch/").count(),
        12,
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovering_one_task_while_others_are_created_succeeds_for_all() {
    // Recovery prunes stale registrations, which can delete the metadata of a `worktree add`
    // running at the same moment; the other tasks must retry rather than fail.
    let fixture = Fixture::new();
    let lost = Workspace::prepare(&fixture.request(50, "lost"))
        .await
        .unwrap();
    std::fs::remove_dir_all(lost.path()).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for task_id in 50..60 {
        let request = fixture.request(task_id, if task_id == 50 { "lost" } else { "fresh" });
        tasks.spawn(async move { (task_id, Workspace::prepare(&request).await) });
    }

    let mut recovered = None;
    while let Some(joined) = tasks.join_next().await {
        let (task_id, result) = joined.unwrap();
        let workspace = result.unwrap_or_else(|e| panic!("task {task_id}: {e}"));
        let (path, branch, _) = parts(&workspace);
        assert_eq!(git(&path, &["symbolic-ref", "--short", "HEAD"]), branch);
        if task_id == 50 {
            recovered = Some(workspace);
        }
    }

    assert_eq!(recovered, Some(lost));
}

#[tokio::test]
async fn remove_deletes_the_worktree_and_keeps_the_branch() {
    let fixture = Fixture::new();
    let workspace = Workspace::prepare(&fixture.request(12, "cleanup"))
        .await
        .unwrap();
    write(&workspace.path().join("work.txt"), "work\n");
    let commit = workspace.commit_all("work").await.unwrap().unwrap();
    write(&workspace.path().join("dirty.txt"), "uncommitted\n");

    workspace.remove().await.unwrap();

    assert!(!workspace.path().exists());
    assert_eq!(
        git(&fixture.repo, &["rev-parse", "refs/heads/orch/12-cleanup"]),
        commit
    );
    let listed = git(&fixture.repo, &["worktree", "list", "--porcelain"]);
    assert!(!listed.contains("orch/12-cleanup"), "{listed}");
    // Removing again is not an error, and a later prepare continues on the kept branch.
    workspace.remove().await.unwrap();
    let again = Workspace::prepare(&fixture.request(12, "cleanup"))
        .await
        .unwrap();
    assert_eq!(again, workspace);
    assert!(again.path().join("work.txt").exists());
}

#[tokio::test]
async fn is_merged_is_false_until_the_branch_is_merged_into_the_base() {
    let fixture = Fixture::new();
    let workspace = Workspace::prepare(&fixture.request(13, "merge me"))
        .await
        .unwrap();
    write(&workspace.path().join("feature.txt"), "feature\n");
    workspace.commit_all("feature").await.unwrap().unwrap();

    let before = workspace.is_merged("main").await.unwrap();
    git(
        &fixture.repo,
        &["merge", "-q", "--ff-only", "orch/13-merge-me"],
    );
    let after = workspace.is_merged("main").await.unwrap();

    assert!(!before);
    assert!(after);
    assert!(workspace.is_merged("no-such-branch").await.is_err());
}

#[tokio::test]
async fn a_project_in_a_subdirectory_gets_a_worktree_of_the_whole_repository() {
    let fixture = Fixture::new();
    let subproject = fixture.repo.join("services").join("api");
    std::fs::create_dir_all(&subproject).unwrap();
    write(&subproject.join("main.rs"), "fn main() {}\n");
    git(&fixture.repo, &["add", "-A"]);
    git(&fixture.repo, &["commit", "-q", "-m", "subproject"]);
    let mut request = fixture.request(14, "sub");
    request.project_dir = subproject;

    let workspace = Workspace::prepare(&request).await.unwrap();

    assert!(workspace.path().join("services/api/main.rs").exists());
    assert!(workspace.path().join("README.md").exists());
}

/// A creation time standing for "this home's database" (see `WorkspaceRequest::task_created_at`).
fn created_at_for(root: &std::path::Path) -> i64 {
    root.as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(7_i64, |hash, byte| {
            hash.wrapping_mul(31).wrapping_add(i64::from(*byte))
        })
        .abs()
}
