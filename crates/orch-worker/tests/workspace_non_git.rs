//! Workspaces for project directories that are not git repositories: copied, sent to review or
//! refused, per the project's `non_git` setting.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use orch_worker::project::NonGitMode;
use orch_worker::workspace::{
    MergeMode, MergeRequest, TaskChange, Workspace, WorkspaceError, WorkspaceRequest,
};

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
            copy_max_bytes: orch_worker::workspace::DEFAULT_COPY_MAX_BYTES,
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
async fn copy_mode_copies_the_tree_without_orch_dirs_or_the_home() {
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
    // The orch home (the worktrees root's parent) is never copied: not its database, not the
    // copy being made.
    assert_eq!(
        listing(path),
        [".orch.toml", "notes.txt", "src", "src/lib.rs"]
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
async fn a_copy_has_no_commits_and_no_branch_and_its_diff_is_its_change() {
    let fixture = Fixture::new();
    let workspace = Workspace::prepare(&fixture.request(3, NonGitMode::Copy))
        .await
        .unwrap();
    std::fs::write(workspace.path().join("notes.txt"), "changed\n").unwrap();

    assert_eq!(workspace.commit_all("orch: task 3").await.unwrap(), None);
    assert_eq!(
        String::from_utf8(workspace.diff().await.unwrap()).unwrap(),
        "diff --git a/notes.txt b/notes.txt\n--- a/notes.txt\n+++ b/notes.txt\n@@ -1 +1 @@\n\
         -notes\n+changed\n"
    );
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

/// The home of the fixture (the worktrees root's parent), as `TaskChange::locate` takes it.
fn home_of(fixture: &Fixture) -> PathBuf {
    fixture.worktrees_root.parent().unwrap().to_path_buf()
}

#[tokio::test]
async fn a_copys_changes_are_its_patch_and_are_copied_back_once() {
    let fixture = Fixture::new();
    let workspace = Workspace::prepare(&fixture.request(7, NonGitMode::Copy))
        .await
        .unwrap();
    let copy = workspace.path().to_path_buf();
    assert!(!copy.join("home").exists(), "the home is never copied");
    std::fs::write(copy.join("notes.txt"), "notes\nmore\n").unwrap();
    std::fs::write(copy.join("src").join("new.rs"), "// new\n").unwrap();
    std::fs::remove_file(copy.join("src").join("lib.rs")).unwrap();
    std::fs::write(copy.join("blob.bin"), [0u8, 1, 2]).unwrap();

    let patch = String::from_utf8(workspace.diff().await.unwrap()).unwrap();
    assert!(
        patch.contains("diff --git a/notes.txt b/notes.txt\n"),
        "{patch}"
    );
    assert!(patch.contains("+more\n"), "{patch}");
    assert!(
        patch.contains("new file mode 100644\n--- /dev/null\n+++ b/src/new.rs"),
        "{patch}"
    );
    assert!(
        patch.contains("deleted file mode 100644\n--- a/src/lib.rs\n+++ /dev/null"),
        "{patch}"
    );
    assert!(
        patch.contains("Binary files /dev/null and b/blob.bin differ"),
        "{patch}"
    );
    assert_eq!(
        orch_worker::run::changed_files(patch.as_bytes()),
        ["blob.bin", "notes.txt", "src/lib.rs", "src/new.rs"]
    );

    let change = TaskChange::locate(&home_of(&fixture), &fixture.project, 7, None, None)
        .await
        .unwrap();
    let request = MergeRequest {
        task_id: 7,
        title: "plain task",
        mode: MergeMode::Merge,
        into: None,
    };
    let landed = change.merge(request).await.unwrap();
    assert_eq!(landed.files.len(), 4, "{landed:?}");
    assert_eq!(
        std::fs::read_to_string(fixture.project.join("notes.txt")).unwrap(),
        "notes\nmore\n"
    );
    assert!(fixture.project.join("src").join("new.rs").is_file());
    assert!(!fixture.project.join("src").join("lib.rs").exists());
    let again = change.merge(request).await.unwrap();
    assert!(again.already && again.files.is_empty(), "{again:?}");
}

#[tokio::test]
async fn git_metadata_made_in_a_copy_is_never_copied_back() {
    let fixture = Fixture::new();
    let workspace = Workspace::prepare(&fixture.request(8, NonGitMode::Copy))
        .await
        .unwrap();
    let hooks = workspace.path().join(".git").join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    std::fs::write(hooks.join("pre-commit"), "#!/bin/sh\necho pwned\n").unwrap();
    std::fs::write(workspace.path().join("notes.txt"), "changed\n").unwrap();
    let change = TaskChange::locate(&home_of(&fixture), &fixture.project, 8, None, None)
        .await
        .unwrap();
    let refused = change
        .merge(MergeRequest {
            task_id: 8,
            title: "plain task",
            mode: MergeMode::Merge,
            into: None,
        })
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains(".git/hooks/pre-commit"),
        "{refused}"
    );
    assert!(!fixture.project.join(".git").exists());
    assert_eq!(
        std::fs::read_to_string(fixture.project.join("notes.txt")).unwrap(),
        "notes\n",
        "nothing was copied back"
    );
}

#[tokio::test]
async fn a_project_over_the_size_limit_is_refused_naming_its_size() {
    let fixture = Fixture::new();
    let mut request = fixture.request(9, NonGitMode::Copy);
    request.copy_max_bytes = 10;
    let error = Workspace::prepare(&request).await.unwrap_err();
    assert!(
        matches!(error, WorkspaceError::TooLarge { bytes, limit: 10, .. } if bytes > 10),
        "{error}"
    );
    assert!(error.to_string().contains("copy_max_size"), "{error}");
    assert!(!fixture.worktrees_root.join("copies").join("9").exists());
}

#[cfg(unix)]
#[tokio::test]
async fn a_directory_replaced_by_a_link_in_the_copy_never_leads_writes_outside_the_project() {
    let fixture = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("lib.rs"), "outside\n").unwrap();
    let workspace = Workspace::prepare(&fixture.request(10, NonGitMode::Copy))
        .await
        .unwrap();
    let src = workspace.path().join("src");
    std::fs::remove_dir_all(&src).unwrap();
    std::os::unix::fs::symlink(outside.path(), &src).unwrap();
    let change = TaskChange::locate(&home_of(&fixture), &fixture.project, 10, None, None)
        .await
        .unwrap();
    let result = change
        .merge(MergeRequest {
            task_id: 10,
            title: "plain task",
            mode: MergeMode::Merge,
            into: None,
        })
        .await;
    // Whatever happened to the project's `src`, nothing outside it was touched.
    assert_eq!(
        std::fs::read_to_string(outside.path().join("lib.rs")).unwrap(),
        "outside\n",
        "{result:?}"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
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
