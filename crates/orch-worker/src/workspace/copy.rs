//! Copy mode for project directories that are not git repositories: the project copied to
//! `copies/<task>` under the worktrees root, made aside and renamed into place.

use std::path::{Path, PathBuf};

use super::{blocking, io_error, Workspace, WorkspaceError, WorkspaceRequest};

pub(super) async fn prepare_copy(request: &WorkspaceRequest) -> Result<Workspace, WorkspaceError> {
    let project_dir = request.project_dir.clone();
    let worktrees_root = request.worktrees_root.clone();
    let task_id = request.task_id;
    let (path, source) =
        blocking(move || copy_project(&project_dir, &worktrees_root, task_id)).await?;
    Ok(Workspace::Copy { path, source })
}

/// Copy `project_dir` to `<worktrees_root>/copies/<task_id>` unless that copy exists already.
fn copy_project(
    project_dir: &Path,
    worktrees_root: &Path,
    task_id: i64,
) -> Result<(PathBuf, PathBuf), WorkspaceError> {
    let copies = worktrees_root.join("copies");
    std::fs::create_dir_all(&copies).map_err(io_error(format!("create {}", copies.display())))?;
    let copies = std::fs::canonicalize(&copies)
        .map_err(io_error(format!("resolve {}", copies.display())))?;
    let root = std::fs::canonicalize(worktrees_root)
        .map_err(io_error(format!("resolve {}", worktrees_root.display())))?;
    let source = std::fs::canonicalize(project_dir)
        .map_err(io_error(format!("resolve {}", project_dir.display())))?;
    let destination = copies.join(task_id.to_string());
    if destination.is_dir() {
        tracing::info!(path = %destination.display(), "reusing copy");
        return Ok((destination, source));
    }
    // Leftovers of a copy interrupted by a crash are never reused: they may be incomplete.
    let partial_prefix = format!(".{task_id}.partial-");
    if let Ok(entries) = std::fs::read_dir(&copies) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&partial_prefix)
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    // The copy is made aside and renamed into place, so a copy that exists is complete.
    let partial = copies.join(format!("{partial_prefix}{:016x}", rand::random::<u64>()));
    // The worktrees root is skipped only when it is inside the project, where copying it would
    // copy the copy being made.
    let skip = (root != source && root.starts_with(&source)).then_some(root.as_path());
    if let Err(e) = copy_tree(&source, &partial, skip) {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    if let Err(source_error) = std::fs::rename(&partial, &destination) {
        let _ = std::fs::remove_dir_all(&partial);
        // Another prepare of the same task finished first: its copy is as good as ours.
        if !destination.is_dir() {
            return Err(WorkspaceError::Io {
                context: format!("move the copy into {}", destination.display()),
                source: source_error,
            });
        }
    }
    tracing::info!(path = %destination.display(), source = %source.display(), "copied project");
    Ok((destination, source))
}

/// Copy a tree without following symbolic links, skipping `.orch` directories and `skip`.
fn copy_tree(source: &Path, destination: &Path, skip: Option<&Path>) -> Result<(), WorkspaceError> {
    let context = || format!("copy {} to {}", source.display(), destination.display());
    let walker = walkdir::WalkDir::new(source)
        .follow_links(false)
        .into_iter()
        .filter_entry(|entry| {
            let skipped_dir = entry.file_type().is_dir()
                && entry.depth() > 0
                && (entry.file_name() == ".orch"
                    || skip.is_some_and(|skip| entry.path().starts_with(skip)));
            !skipped_dir
        });
    for entry in walker {
        let entry = entry.map_err(|e| WorkspaceError::Io {
            context: context(),
            source: e.into(),
        })?;
        let relative = entry
            .path()
            .strip_prefix(source)
            .map_err(|_| WorkspaceError::Io {
                context: context(),
                source: std::io::Error::other(format!(
                    "{} is outside {}",
                    entry.path().display(),
                    source.display()
                )),
            })?;
        let target = destination.join(relative);
        let file_type = entry.file_type();
        let result = if file_type.is_dir() {
            std::fs::create_dir_all(&target)
        } else if file_type.is_symlink() {
            copy_symlink(entry.path(), &target)
        } else if file_type.is_file() {
            std::fs::copy(entry.path(), &target).map(|_| ())
        } else {
            // Sockets, pipes and devices have no content to copy.
            Ok(())
        };
        result.map_err(io_error(format!(
            "copy {} to {}",
            entry.path().display(),
            target.display()
        )))?;
    }
    Ok(())
}

#[cfg(unix)]
fn copy_symlink(link: &Path, target: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(std::fs::read_link(link)?, target)
}

#[cfg(not(unix))]
fn copy_symlink(link: &Path, target: &Path) -> std::io::Result<()> {
    // Without unix symlinks at hand, the link's target content is copied instead.
    if link.is_dir() {
        std::fs::create_dir_all(target)
    } else {
        std::fs::copy(link, target).map(|_| ())
    }
}
