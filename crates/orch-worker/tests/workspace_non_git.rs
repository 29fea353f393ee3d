//! Workspaces for project directories that are not git repositories: copied, sent to review or
//! refused, per the project's `non_git` setting.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use orch_worker::project::NonGitMode;
use orch_worker::workspace::{Workspace, WorkspaceError, WorkspaceRequest};

/// A plain directory with a nested file, a `.orch` directory, and orch's home inside it (the
/// worst case for copying: the copy must not copy itself).
struct Fixture {
    _dir: tempfile::TempDir,
    project: PathBuf,
    worktrees_root: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("plain");
        std::fs::create_dir_all(project.join("src")).unwrap();
        std::fs::create_dir_all(project.join(".orch")).unwrap();
        std::fs::write(project.join("notes.txt"), "notes\n").unwrap();
        std::fs::write(project.join("src").join("lib.rs"), "pub fn f() {}\n").unwrap();
        std::fs::write(project.join(".orch").join("state"), "orch's own\n").unwrap();
        std::fs::write(project.join(".orch.toml"), "non_git = \"copy\"\n").unwrap();
        let worktrees_root = project.join("home").join("worktrees");
        std::fs::create_dir_all(&worktrees_root).unwrap();
        std::fs::write(project.join("home").join("orch.db"), "database\n").unwrap();
        assert!(
            !std::process::Command::new("git")
                .current_dir(&project)
                .args(["rev-parse", "--git-dir"])
                .output()
                .unwrap()
                .status
                .success(),
            "these tests need a temporary directory outside any git repository"
        );
        Fixture {
            _dir: dir,
            project,
            worktrees_root,
        }
    }

    fn request(&self, task_id: i64, non_git: NonGitMode) -> WorkspaceRequest {
        WorkspaceRequest {
            project_dir: self.project.clone(),
            worktrees_root: self.worktrees_root.clone(),
            task_id,
            title: "plain task".to_string(),
            base_branch: None,
            non_git,
            // One orch database per home in these tests: a task is its id and creation time.
            task_created_at: created_at_for(&self.worktrees_root),
            start: orch_worker::workspace::StartRequest::default(),
        }
    }
}

fn listing(root: &Path) -> Vec<String> {
    let mut entries: Vec<String> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|entry| {
            entry
                .unwrap()
                .path()
                .strip_prefix(root)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    entries.sort();
    entries
}

#[tokio::test]
async fn copy_mode_copies_the_tree_without_orch_dirs_or_the_worktrees_root() {
    let fixture = Fixture::new();

    let workspace = Workspace::prepare(&fixture.request(1, NonGitMode::Copy))
        .await
        .unwrap();

    let Workspace::Copy { path, source } = &workspace else {
        panic!("expected a copy, got {workspace:?}")
    };
    assert_eq!(source, &fixture.project.canonicalize().unwrap());
    assert_eq!(
        path,
        &fixture
            .worktrees_root
            .canonicalize()
            .unwrap()
            .join("copies")
            .join("1")
    );
    assert_eq!(workspace.path(), path);
    // `home` itself is copied (it holds more than the worktrees), its `worktrees` is not.
    assert_eq!(
        listing(path),
        [
            ".orch.toml",
            "home",
            "home/orch.db",
            "notes.txt",
            "src",
            "src/lib.rs"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(path.join("src/lib.rs")).unwrap(),
        "pub fn f() {}\n"
    );
}

#[tokio::test]
async fn copy_mode_reuses_an_existing_copy_on_a_second_prepare() {
    let fixture = Fixture::new();
    let request = fixture.request(2, NonGitMode::Copy);
    let first = Workspace::prepare(&request).await.unwrap();
    std::fs::write(first.path().join("notes.txt"), "edited by attempt 1\n").unwrap();

    let second = Workspace::prepare(&request).await.unwrap();

    assert_eq!(second, first);
    assert_eq!(
        std::fs::read_to_string(second.path().join("notes.txt")).unwrap(),
        "edited by attempt 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(fixture.project.join("notes.txt")).unwrap(),
        "notes\n"
    );
}

#[tokio::test]
async fn a_copy_has_no_commits_an_empty_diff_and_no_branch() {
    let fixture = Fixture::new();
    let workspace = Workspace::prepare(&fixture.request(3, NonGitMode::Copy))
        .await
        .unwrap();
    std::fs::write(workspace.path().join("notes.txt"), "changed\n").unwrap();

    assert_eq!(workspace.commit_all("orch: task 3").await.unwrap(), None);
    assert_eq!(workspace.diff().await.unwrap(), b"");
    assert!(!workspace.is_merged("main").await.unwrap());
}

#[tokio::test]
async fn remove_deletes_a_copy_and_leaves_the_original() {
    let fixture = Fixture::new();
    let workspace = Workspace::prepare(&fixture.request(4, NonGitMode::Copy))
        .await
        .unwrap();

    workspace.remove().await.unwrap();

    assert!(!workspace.path().exists());
    assert!(fixture.project.join("notes.txt").exists());
    workspace.remove().await.unwrap();
}

#[tokio::test]
async fn needs_review_mode_refuses_with_needs_review() {
    let fixture = Fixture::new();

    let error = Workspace::prepare(&fixture.request(5, NonGitMode::NeedsReview))
        .await
        .unwrap_err();

    assert!(
        matches!(&error, WorkspaceError::NeedsReview(dir) if dir == &fixture.project),
        "{error:?}"
    );
    assert!(!fixture.worktrees_root.join("copies").exists());
}

#[tokio::test]
async fn fail_mode_refuses_with_not_git() {
    let fixture = Fixture::new();

    let error = Workspace::prepare(&fixture.request(6, NonGitMode::Fail))
        .await
        .unwrap_err();

    assert!(
        matches!(&error, WorkspaceError::NotGit(dir) if dir == &fixture.project),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("is not a git repository"),
        "{error}"
    );
}

#[tokio::test]
async fn a_missing_project_directory_is_an_io_error_not_a_copy() {
    let fixture = Fixture::new();
    let mut request = fixture.request(7, NonGitMode::Copy);
    request.project_dir = fixture.project.join("does-not-exist");

    let error = Workspace::prepare(&request).await.unwrap_err();

    assert!(matches!(error, WorkspaceError::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("does-not-exist"), "{error}");
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
