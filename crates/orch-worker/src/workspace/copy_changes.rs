//! What a task changed in a copy (copy mode, for projects that are not git repositories): the
//! manifest of what the copy held when it was made, the changes against it, their patch, and
//! copying them back into the original (`orch task merge`).
//!
//! The manifest (`copies/<task>.manifest.json`, beside the copy and out of the task's reach)
//! holds a hash per regular file and the target per symbolic link, as the copy was made. A file
//! is changed when the copy's hash differs from it, added when the manifest lacks it, deleted
//! when the copy lacks it. The patch is made in process with `similar` (no program runs, so
//! nothing in the copy can steer it): unified text diffs with git's headers, so that
//! `changed_files` and `git apply` read them; a binary file is named with git's "Binary files
//! differ" line. The old side of a diff is the original as it is now (the manifest keeps hashes,
//! not contents).
//!
//! Copying back refuses, before writing anything, when a file the task changed was changed in
//! the original since the copy was made (its hash is neither the manifest's nor already the
//! copy's), or when the task made or changed anything under a `.git` directory (hooks and config
//! must never reach the user's directory); a file already equal to the copy's is left alone, so
//! a second merge changes nothing.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::copy::walk;
use super::{io_error, WorkspaceError};

/// What a copy held when it was made: relative path (`/`-separated) to `sha256:<hex>` for a
/// regular file or `link:<target>` for a symbolic link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Manifest {
    files: BTreeMap<String, String>,
}

/// How one path changed in the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// New in the copy.
    Added,
    /// Different content (or link target).
    Modified,
    /// Gone from the copy.
    Deleted,
}

/// One changed path of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyChange {
    /// Relative to the project, `/`-separated.
    pub path: String,
    /// How.
    pub kind: ChangeKind,
}

/// Hash the copy at `copy` (just made) into the manifest at `manifest`, written aside and
/// renamed into place.
pub(super) fn record_manifest(copy: &Path, manifest: &Path) -> Result<(), WorkspaceError> {
    let files = snapshot(copy)?;
    let bytes = serde_json::to_vec(&Manifest { files }).map_err(|e| WorkspaceError::Io {
        context: format!("write {}", manifest.display()),
        source: std::io::Error::other(e),
    })?;
    let partial = manifest.with_extension(format!("partial-{:016x}", rand::random::<u64>()));
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, manifest))
        .map_err(io_error(format!("write {}", manifest.display())))
}

fn read_manifest(path: &Path) -> Result<Manifest, WorkspaceError> {
    let bytes = std::fs::read(path).map_err(|e| WorkspaceError::Io {
        context: format!(
            "read the copy's manifest {} (copies made by older versions of orch have none; \
             compare the copy with the original by hand)",
            path.display()
        ),
        source: e,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| WorkspaceError::Io {
        context: format!("read the copy's manifest {}", path.display()),
        source: std::io::Error::other(e),
    })
}

/// Every regular file and symbolic link under `root` (as a copy holds them), with its entry.
fn snapshot(root: &Path) -> Result<BTreeMap<String, String>, WorkspaceError> {
    let mut files = BTreeMap::new();
    for entry in walk(root, None) {
        let entry = entry.map_err(|e| WorkspaceError::Io {
            context: format!("read {}", root.display()),
            source: e.into(),
        })?;
        let file_type = entry.file_type();
        if !(file_type.is_file() || file_type.is_symlink()) {
            continue;
        }
        let Some(relative) = relative_name(root, entry.path()) else {
            continue;
        };
        if let Some(identity) = identity(entry.path())? {
            files.insert(relative, identity);
        }
    }
    Ok(files)
}

fn relative_name(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Some(parts.join("/"))
}

/// A file's manifest entry; `None` when nothing (or a directory, a socket...) is there.
fn identity(path: &Path) -> Result<Option<String>, WorkspaceError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(format!("read {}", path.display()))(e)),
    };
    if metadata.file_type().is_symlink() {
        let target =
            std::fs::read_link(path).map_err(io_error(format!("read {}", path.display())))?;
        return Ok(Some(format!("link:{}", target.display())));
    }
    if !metadata.is_file() {
        return Ok(None);
    }
    use sha2::Digest;
    let mut file =
        std::fs::File::open(path).map_err(io_error(format!("read {}", path.display())))?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(io_error(format!("read {}", path.display())))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(Some(format!("sha256:{}", hex::encode(hasher.finalize()))))
}

/// The copy's changes against its manifest, sorted by path.
pub fn changes(copy: &Path, manifest: &Path) -> Result<Vec<CopyChange>, WorkspaceError> {
    let before = read_manifest(manifest)?.files;
    let now = snapshot(copy)?;
    let mut changes = Vec::new();
    for (path, identity) in &now {
        match before.get(path) {
            None => changes.push(CopyChange {
                path: path.clone(),
                kind: ChangeKind::Added,
            }),
            Some(old) if old != identity => changes.push(CopyChange {
                path: path.clone(),
                kind: ChangeKind::Modified,
            }),
            Some(_) => {}
        }
    }
    for path in before.keys().filter(|path| !now.contains_key(*path)) {
        changes.push(CopyChange {
            path: path.clone(),
            kind: ChangeKind::Deleted,
        });
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(changes)
}

/// The patch of the copy's changes against the original as it is now (see the module docs).
pub fn patch(copy: &Path, source: &Path, manifest: &Path) -> Result<Vec<u8>, WorkspaceError> {
    let mut out = Vec::new();
    for change in changes(copy, manifest)? {
        let old = read_side(&source.join(&change.path))?;
        let new = read_side(&copy.join(&change.path))?;
        if old == new {
            continue;
        }
        file_patch(&change.path, old.as_deref(), new.as_deref(), &mut out);
    }
    Ok(out)
}

/// A file's content for a diff (a link's target); `None` when absent.
fn read_side(path: &Path) -> Result<Option<Vec<u8>>, WorkspaceError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(format!("read {}", path.display()))(e)),
        Ok(metadata) if metadata.file_type().is_symlink() => {
            let target =
                std::fs::read_link(path).map_err(io_error(format!("read {}", path.display())))?;
            Ok(Some(
                target.as_os_str().to_string_lossy().as_bytes().to_vec(),
            ))
        }
        Ok(metadata) if metadata.is_file() => std::fs::read(path)
            .map(Some)
            .map_err(io_error(format!("read {}", path.display()))),
        Ok(_) => Ok(None),
    }
}

fn file_patch(path: &str, old: Option<&[u8]>, new: Option<&[u8]>, out: &mut Vec<u8>) {
    let mut text = format!("diff --git a/{path} b/{path}\n");
    match (old, new) {
        (None, _) => text.push_str("new file mode 100644\n"),
        (_, None) => text.push_str("deleted file mode 100644\n"),
        _ => {}
    }
    let old_name = old.map_or("/dev/null".to_owned(), |_| format!("a/{path}"));
    let new_name = new.map_or("/dev/null".to_owned(), |_| format!("b/{path}"));
    let as_text = |bytes: Option<&[u8]>| -> Option<String> {
        match bytes {
            None => Some(String::new()),
            Some(bytes) if bytes.contains(&0) => None,
            Some(bytes) => String::from_utf8(bytes.to_vec()).ok(),
        }
    };
    match (as_text(old), as_text(new)) {
        (Some(old_text), Some(new_text)) => {
            let diff = similar::TextDiff::from_lines(&old_text, &new_text);
            text.push_str(
                &diff
                    .unified_diff()
                    .context_radius(3)
                    .header(&old_name, &new_name)
                    .to_string(),
            );
        }
        _ => text.push_str(&format!("Binary files {old_name} and {new_name} differ\n")),
    }
    out.extend_from_slice(text.as_bytes());
}

/// Copy the copy's changes back into `source` (see the module docs); the paths written or
/// deleted. Refused with [`WorkspaceError::ChangedMeanwhile`] before anything is written.
pub fn copy_back(
    copy: &Path,
    source: &Path,
    manifest: &Path,
) -> Result<Vec<String>, WorkspaceError> {
    let before = read_manifest(manifest)?.files;
    let all = changes(copy, manifest)?;
    // Git metadata made or changed by the task (hooks, config) would act in the user's
    // directory the moment it became a repository, or in a nested one at once.
    let metadata: Vec<&str> = all
        .iter()
        .filter(|change| change.path.split('/').any(|part| part == ".git"))
        .map(|change| change.path.as_str())
        .collect();
    if !metadata.is_empty() {
        return Err(WorkspaceError::Refused(format!(
            "refused: the task changed git metadata in its copy ({}), which orch never copies \
             back; nothing was copied. Copy what you want by hand from {}",
            metadata.join(", "),
            copy.display()
        )));
    }
    // A path under a symbolic link of the original would be written through the link, outside
    // the project (a copy holds links as links, so its changes are never under one).
    if let Some(change) = all
        .iter()
        .find(|change| has_link_ancestor(source, &change.path))
    {
        return Err(WorkspaceError::Refused(format!(
            "refused: {} is under a symbolic link in {}; nothing was copied back",
            change.path,
            source.display()
        )));
    }
    let mut pending: Vec<(CopyChange, PathBuf)> = Vec::new();
    let mut conflicting = Vec::new();
    for change in all {
        let original = source.join(&change.path);
        let current = identity(&original)?;
        let wanted = identity(&copy.join(&change.path))?;
        if current == wanted {
            continue; // already as the copy has it
        }
        if current.as_ref() != before.get(&change.path) {
            conflicting.push(change.path.clone());
            continue;
        }
        pending.push((change, original));
    }
    if !conflicting.is_empty() {
        return Err(WorkspaceError::ChangedMeanwhile {
            dir: source.to_path_buf(),
            files: conflicting,
        });
    }
    // Deletions first: a directory the task replaced with a file (or a link) is emptied before
    // the new entry takes its place.
    pending.sort_by_key(|(change, _)| change.kind != ChangeKind::Deleted);
    let mut written = Vec::new();
    for (change, original) in pending {
        if has_link_ancestor(source, &change.path) {
            return Err(WorkspaceError::Refused(format!(
                "refused: {} is under a symbolic link the task made; copied back so far: {}",
                change.path,
                written.join(", ")
            )));
        }
        let from = copy.join(&change.path);
        match change.kind {
            ChangeKind::Deleted => std::fs::remove_file(&original)
                .map_err(io_error(format!("delete {}", original.display())))?,
            ChangeKind::Added | ChangeKind::Modified => put(&from, &original)?,
        }
        written.push(change.path);
    }
    Ok(written)
}

/// Whether a directory between `root` and `root/relative` is a symbolic link (or not a
/// directory at all).
fn has_link_ancestor(root: &Path, relative: &str) -> bool {
    let parts: Vec<&str> = relative.split('/').collect();
    let mut dir = root.to_path_buf();
    for part in &parts[..parts.len().saturating_sub(1)] {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(metadata) if metadata.file_type().is_symlink() || !metadata.is_dir() => return true,
            Ok(_) => {}
            // Missing: created as a real directory when written.
            Err(_) => return false,
        }
    }
    false
}

/// Replace `to` with the file or link at `from`, written aside and renamed into place.
fn put(from: &Path, to: &Path) -> Result<(), WorkspaceError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io_error(format!("create {}", parent.display())))?;
    }
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = to.with_file_name(format!(".{name}.orch-{:016x}", rand::random::<u64>()));
    let metadata =
        std::fs::symlink_metadata(from).map_err(io_error(format!("read {}", from.display())))?;
    let made = if metadata.file_type().is_symlink() {
        std::fs::read_link(from).and_then(|target| symlink(&target, &aside))
    } else {
        std::fs::copy(from, &aside).map(drop)
    };
    made.and_then(|()| std::fs::rename(&aside, to))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&aside);
        })
        .map_err(io_error(format!(
            "copy {} to {}",
            from.display(),
            to.display()
        )))
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::fs::copy(target, link).map(drop)
}
