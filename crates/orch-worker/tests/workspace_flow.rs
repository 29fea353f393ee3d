//! Workspaces that flow: one branch per task whoever prepares it, step checkpoints, and the
//! reset that discards a lost attempt's half-done step. Real git repositories.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use orch_worker::project::NonGitMode;
use orch_worker::workspace::{StartRequest, Workspace, WorkspaceRequest};

struct Fixture {
    dir: tempfile::TempDir,
    repo: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("project");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "-q"]);
        git(&repo, &["symbolic-ref", "HEAD", "refs/heads/main"]);
        git(&repo, &["config", "user.name", "Test"]);
        git(&repo, &["config", "user.email", "test@example.invalid"]);
        std::fs::write(repo.join("log.txt"), "base\n").unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "initial"]);
        Fixture { dir, repo }
    }

    /// Task `id` created at `created_at` (its database), prepared in the home `home`.
    fn request(&self, home: &str, id: i64, created_at: i64) -> WorkspaceRequest {
        WorkspaceRequest {
            project_dir: self.repo.clone(),
            worktrees_root: self.dir.path().join(home).join("worktrees"),
            task_id: id,
            title: "append a line".into(),
            base_branch: None,
            non_git: NonGitMode::Fail,
            task_created_at: created_at,
            start: StartRequest::default(),
            copy_max_bytes: orch_worker::workspace::DEFAULT_COPY_MAX_BYTES,
        }
    }
}

fn branch(workspace: &Workspace) -> String {
    match workspace {
        Workspace::Git { branch, .. } => branch.clone(),
        Workspace::Copy { .. } => panic!("a git workspace"),
    }
}

#[tokio::test]
async fn a_retry_on_another_home_continues_on_the_same_branch_and_another_database_gets_its_own() {
    let fixture = Fixture::new();
    let first = Workspace::prepare(&fixture.request("home-a", 5, 1000))
        .await
        .unwrap();
    std::fs::write(first.path().join("log.txt"), "base\nfirst\n").unwrap();
    first.checkpoint(5, 1, "append").await.unwrap().unwrap();

    // The same task (same id and creation time) on another worker's home.
    let retry = Workspace::prepare(&fixture.request("home-b", 5, 1000))
        .await
        .unwrap();
    assert_eq!(branch(&retry), branch(&first));
    assert_eq!(
        std::fs::read_to_string(retry.path().join("log.txt")).unwrap(),
        "base\nfirst\n"
    );
    assert_eq!(
        retry
            .completed_steps()
            .await
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["append"]
    );

    // Task 5 of another database on the same repository never continues on that branch.
    let stranger = Workspace::prepare(&fixture.request("home-c", 5, 2000))
        .await
        .unwrap();
    assert_ne!(branch(&stranger), branch(&first));
    assert_eq!(
        std::fs::read_to_string(stranger.path().join("log.txt")).unwrap(),
        "base\n"
    );
    let branches = git(&fixture.repo, &["branch", "--list", "orch/5-*"]);
    assert_eq!(branches.lines().count(), 2, "{branches}");
}

#[tokio::test]
async fn reset_discards_a_half_done_step_and_keeps_the_checkpoints() {
    let fixture = Fixture::new();
    let request = fixture.request("home", 1, 1);
    let workspace = Workspace::prepare(&request).await.unwrap();
    let log = workspace.path().join("log.txt");
    std::fs::write(&log, "base\none\n").unwrap();
    let one = workspace.checkpoint(1, 1, "one").await.unwrap().unwrap();
    // Nothing changed is still a checkpoint.
    let empty = workspace
        .checkpoint(1, 1, "nothing")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(one, empty);
    assert!(
        !workspace.reset_to_tip().await.unwrap(),
        "nothing to discard"
    );

    // A lost attempt: half of step two, a new file, a deleted file, an ignored cache.
    std::fs::write(&log, "base\none\ntw").unwrap();
    std::fs::write(workspace.path().join("new.txt"), "half").unwrap();
    std::fs::create_dir(workspace.path().join("newdir")).unwrap();
    std::fs::write(workspace.path().join("newdir/x"), "half").unwrap();
    std::fs::write(workspace.path().join(".gitignore"), "cache/\n").unwrap();
    let retry = Workspace::prepare(&request).await.unwrap();
    assert!(retry.reset_to_tip().await.unwrap());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "base\none\n");
    assert!(!retry.path().join("new.txt").exists());
    assert!(!retry.path().join("newdir").exists());
    assert!(!retry.path().join(".gitignore").exists());
    let completed = retry.completed_steps().await.unwrap();
    assert_eq!(completed.get("one"), Some(&one));
    assert_eq!(completed.get("nothing"), Some(&empty));
    assert!(retry.diff().await.unwrap().windows(4).any(|w| w == b"+one"));

    // A round end (a review rejection): the steps before it run again.
    retry
        .end_round("orch: review rejected")
        .await
        .unwrap()
        .unwrap();
    assert!(retry.completed_steps().await.unwrap().is_empty());
}
