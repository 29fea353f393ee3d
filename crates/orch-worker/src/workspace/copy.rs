//! Copy mode for project directories that are not git repositories: the project copied to
//! `copies/<task>` under the worktrees root, made aside and renamed into place, with the hashes
//! of the originals in `copies/<task>.manifest.json` beside it (out of the task's reach), which
//! is what the copy's changes are measured against (`copy_changes.rs`).
//!
//! The orch home is never copied, even when the project directory contains it (the home is the
//! worktrees root's parent, as `WorkspaceRequest::worktrees_root` says), and neither are `.orch`
//! directories. A project larger than `WorkspaceRequest::copy_max_bytes` is refused before
//! anything is copied, naming its size.

use std::path::{Path, PathBuf};

use super::copy_changes;
use super::{blocking, io_error, Workspace, WorkspaceError, WorkspaceRequest};

pub(super) async fn prepare_copy(request: &WorkspaceRequest) -> Result<Workspace, WorkspaceError> {
    let project_dir = request.project_dir.clone();
    let worktrees_root = request.worktrees_root.clone();
    let task_id = request.task_id;
    let max_bytes = request.copy_max_bytes;
    let (path, source) =
        blocking(move || copy_project(&project_dir, &worktrees_root, task_id, max_bytes)).await?;
    Ok(Workspace::Copy { path, source })
}

/// Where the manifest of the copy at `copy` is: beside it, `<copy>.manifest.json`.
pub(super) fn manifest_path(copy: &Path) -> PathBuf {
    let name = copy
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    copy.with_file_name(format!("{name}.manifest.json"))
}

/// Copy `project_dir` to `<worktrees_root>/copies/<task_id>` unless that copy exists already.
fn copy_project(
    project_dir: &Path,
    worktrees_root: &Path,
    task_id: i64,
    max_bytes: u64,
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
    // The home (the worktrees root's parent) is skipped when it is inside the project: copying
    // it would copy orch's database and tokens into the task's reach, and the copy being made.
    let home = root.parent().unwrap_or(&root).to_path_buf();
    if home == source || root == source {
        return Err(WorkspaceError::Io {
            context: format!("copy {}", source.display()),
            source: std::io::Error::other(
                "the project directory is the orch home itself; register the project's own \
                 directory instead",
            ),
        });
    }
    let skip = home.starts_with(&source).then_some(home.as_path());
    let size = tree_size(&source, skip)?;
    if size > max_bytes {
        return Err(WorkspaceError::TooLarge {
            dir: source,
            bytes: size,
            limit: max_bytes,
        });
    }
    let manifest = manifest_path(&destination);
    if let Err(e) = copy_tree(&source, &partial, skip)
        .and_then(|()| copy_changes::record_manifest(&partial, &manifest))
    {
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

/// A walk of a project tree without following symbolic links, skipping `.orch` directories and
/// `skip` (the home): what a copy holds and what its changes are measured over.
pub(super) fn walk<'a>(
    root: &Path,
    skip: Option<&'a Path>,
) -> impl Iterator<Item = walkdir::Result<walkdir::DirEntry>> + 'a {
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(move |entry| {
            let skipped_dir = entry.file_type().is_dir()
                && entry.depth() > 0
                && (entry.file_name() == ".orch"
                    || skip.is_some_and(|skip| entry.path().starts_with(skip)));
            !skipped_dir
        })
}

/// The bytes of the regular files a copy of `source` would hold.
fn tree_size(source: &Path, skip: Option<&Path>) -> Result<u64, WorkspaceError> {
    let mut total: u64 = 0;
    for entry in walk(source, skip) {
        let entry = entry.map_err(|e| WorkspaceError::Io {
            context: format!("measure {}", source.display()),
            source: e.into(),
        })?;
        if entry.file_type().is_file() {
            let metadata = entry.metadata().map_err(|e| WorkspaceError::Io {
                context: format!("measure {}", entry.path().display()),
                source: e.into(),
            })?;
            total = total.saturating_add(metadata.len());
        }
    }
    Ok(total)
}

/// Copy a tree without following symbolic links, skipping `.orch` directories and `skip`.
fn copy_tree(source: &Path, destination: &Path, skip: Option<&Path>) -> Result<(), WorkspaceError> {
    let context = || format!("copy {} to {}", source.display(), destination.display());
    for entry in walk(source, skip) {
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
