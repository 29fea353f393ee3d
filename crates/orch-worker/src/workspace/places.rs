//! Where a task's worktree keeps its git metadata, recorded by orch when it made the worktree,
//! and the check that the task has not replaced or redirected any of it.
//!
//! The record is the base record beside the worktree (`<group>/<task>.base`, outside the
//! worktree, in orch's home, which a task cannot write):
//!
//! ```text
//! <base sha> <branch>
//! worktree <absolute canonical path of the worktree>
//! admin <absolute canonical path of <common>/worktrees/<name>>
//! common <absolute canonical path of the repository's common git directory>
//! ```
//!
//! The first line is the older record format on its own; such a record (written before orch
//! recorded the places, or by a crash between creating the branch and the worktree) gets its
//! places from [`locate`] the next time the task's worktree is prepared, and they are written
//! then. Paths are written as bytes; one holding a newline is refused.
//!
//! The check reads files only; no git runs in a worktree that has not passed it.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::WorkspaceError;

/// The places orch's git uses for one task's worktree, all canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitPlaces {
    /// The worktree directory (`GIT_WORK_TREE`).
    pub worktree: PathBuf,
    /// The worktree's private git directory, `<common>/worktrees/<name>` (its index lives there).
    pub admin_dir: PathBuf,
    /// The repository's common git directory, the main checkout's `.git` (`GIT_DIR`).
    pub common_dir: PathBuf,
}

impl GitPlaces {
    /// The worktree's own index.
    pub fn index(&self) -> PathBuf {
        self.admin_dir.join("index")
    }
}

/// A base record as read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseRecord {
    /// The commit the branch started from (not yet checked to be an object id).
    pub base_commit: String,
    /// The task's branch.
    pub branch: String,
    /// The recorded places; `None` for a record in the older format.
    pub places: Option<GitPlaces>,
}

/// Parse a base record; `None` when its first line is not `<sha> <branch>`.
pub fn parse_record(bytes: &[u8]) -> Option<BaseRecord> {
    let mut lines = bytes.split(|byte| *byte == b'\n');
    let first = String::from_utf8_lossy(lines.next()?).into_owned();
    let mut fields = first.split_whitespace();
    let (base_commit, branch) = (fields.next()?.to_owned(), fields.next()?.to_owned());
    let (mut worktree, mut admin, mut common) = (None, None, None);
    for line in lines {
        let Some(space) = line.iter().position(|byte| *byte == b' ') else {
            continue;
        };
        let (key, value) = (&line[..space], path_from_bytes(&line[space + 1..]));
        match key {
            b"worktree" => worktree = Some(value),
            b"admin" => admin = Some(value),
            b"common" => common = Some(value),
            _ => {}
        }
    }
    let places = match (worktree, admin, common) {
        (Some(worktree), Some(admin_dir), Some(common_dir)) => Some(GitPlaces {
            worktree,
            admin_dir,
            common_dir,
        }),
        _ => None,
    };
    Some(BaseRecord {
        base_commit,
        branch,
        places,
    })
}

/// The bytes of a base record.
pub(super) fn render_record(
    base_commit: &str,
    branch: &str,
    places: Option<&GitPlaces>,
) -> Result<Vec<u8>, WorkspaceError> {
    let mut bytes = format!("{base_commit} {branch}\n").into_bytes();
    if let Some(places) = places {
        for (key, path) in [
            ("worktree", &places.worktree),
            ("admin", &places.admin_dir),
            ("common", &places.common_dir),
        ] {
            let raw = path.as_os_str().as_encoded_bytes();
            if raw.contains(&b'\n') {
                return Err(WorkspaceError::Io {
                    context: format!(
                        "record the git directories of {}",
                        places.worktree.display()
                    ),
                    source: std::io::Error::other(format!(
                        "the path {} holds a newline; move the repository or orch's home to a \
                         path without one",
                        path.display()
                    )),
                });
            }
            bytes.extend_from_slice(key.as_bytes());
            bytes.push(b' ');
            bytes.extend_from_slice(raw);
            bytes.push(b'\n');
        }
    }
    Ok(bytes)
}

/// What the check found in a worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Finding {
    /// Everything as orch made it, `HEAD` on the task's branch.
    Intact,
    /// Intact, but `HEAD` names something else (described).
    HeadMoved(String),
    /// The worktree's `.git` is gone: the directory is no worktree (any more).
    NoGitFile,
    /// Something orch's git would have followed was replaced or redirected (described).
    Tampered(String),
}

/// Check a worktree against its recorded places, reading files only: its `.git` is still a file
/// whose `gitdir:` names the recorded admin dir, that admin dir is a real directory of the
/// recorded repository whose `commondir` and `gitdir` point back where they should, its index is
/// a plain file (or absent), and `HEAD` names `refs/heads/<branch>`.
pub(super) fn check(places: &GitPlaces, branch: &str) -> Finding {
    let dot_git = places.worktree.join(".git");
    match std::fs::symlink_metadata(&dot_git) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Finding::NoGitFile,
        Err(e) => return Finding::Tampered(format!("its .git cannot be read ({e})")),
        Ok(metadata) if metadata.is_dir() => {
            return Finding::Tampered(
                "its .git was replaced by a directory (a repository of the task's making)".into(),
            )
        }
        Ok(metadata) if !metadata.is_file() => {
            return Finding::Tampered("its .git was replaced by a link or special file".into())
        }
        Ok(_) => {}
    }
    if let Err(problem) = check_links(places) {
        return Finding::Tampered(problem);
    }
    let head = match read_small(&places.admin_dir.join("HEAD")) {
        Ok(head) => head,
        Err(problem) => return Finding::Tampered(format!("its HEAD {problem}")),
    };
    let expected = format!("ref: refs/heads/{branch}");
    if head == expected.as_bytes() {
        return Finding::Intact;
    }
    let head = String::from_utf8_lossy(&head);
    match head.strip_prefix("ref: ") {
        Some(reference) => Finding::HeadMoved(format!("`{reference}`")),
        None => Finding::HeadMoved("a detached HEAD".into()),
    }
}

/// The places of an existing worktree of the repository at `common_dir`, found from its `.git`
/// file and checked as [`check`] does: for a worktree orch has just made, and for one recorded in
/// the older format. An error describes what does not fit.
pub(super) fn locate(worktree: &Path, common_dir: &Path) -> Result<GitPlaces, String> {
    let dot_git = worktree.join(".git");
    let metadata = std::fs::symlink_metadata(&dot_git)
        .map_err(|e| format!("{} cannot be read ({e})", dot_git.display()))?;
    if !metadata.is_file() {
        return Err(format!("{} is not the file git makes", dot_git.display()));
    }
    let admin = gitdir_of(worktree)?;
    let places = GitPlaces {
        worktree: worktree.to_path_buf(),
        admin_dir: std::fs::canonicalize(&admin)
            .map_err(|e| format!("its git directory {} is missing ({e})", admin.display()))?,
        common_dir: common_dir.to_path_buf(),
    };
    check_links(&places)?;
    Ok(places)
}

/// The checks of [`check`] between the `.git` file and the admin dir's own files.
fn check_links(places: &GitPlaces) -> Result<(), String> {
    let admin = &places.admin_dir;
    let named = gitdir_of(&places.worktree)?;
    if std::fs::canonicalize(&named).ok().as_deref() != Some(admin.as_path()) {
        return Err(format!(
            "its .git points at {} instead of {}",
            named.display(),
            admin.display()
        ));
    }
    match std::fs::symlink_metadata(admin) {
        Ok(metadata) if metadata.is_dir() => {}
        _ => {
            return Err(format!(
                "its git directory {} is not a directory",
                admin.display()
            ))
        }
    }
    let expected_parent = places.common_dir.join("worktrees");
    if admin.parent() != Some(expected_parent.as_path())
        || std::fs::canonicalize(admin).ok().as_deref() != Some(admin.as_path())
    {
        return Err(format!(
            "its git directory {} is not inside {}",
            admin.display(),
            expected_parent.display()
        ));
    }
    let common = resolve(
        admin,
        &read_small(&admin.join("commondir")).map_err(|p| format!("its commondir {p}"))?,
    );
    if std::fs::canonicalize(&common).ok().as_deref() != Some(places.common_dir.as_path()) {
        return Err(format!(
            "its commondir names {} instead of {}",
            common.display(),
            places.common_dir.display()
        ));
    }
    let back = resolve(
        admin,
        &read_small(&admin.join("gitdir")).map_err(|p| format!("its gitdir file {p}"))?,
    );
    let dot_git = places.worktree.join(".git");
    if std::fs::canonicalize(&back).ok() != std::fs::canonicalize(&dot_git).ok() {
        return Err(format!(
            "its gitdir file names {} instead of {}",
            back.display(),
            dot_git.display()
        ));
    }
    match std::fs::symlink_metadata(places.index()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Ok(metadata) if metadata.is_file() => {}
        _ => return Err("its index is not a plain file".into()),
    }
    Ok(())
}

/// The recorded admin dir when it may be deleted with its worktree: a real directory directly in
/// `<common>/worktrees` whose `gitdir` file still names the worktree's `.git` (else it belongs
/// to another worktree now, or to nobody, and `git worktree prune` is left to judge it).
pub(super) fn removable_admin_dir(places: &GitPlaces) -> Option<PathBuf> {
    let admin = &places.admin_dir;
    let is_real_dir = std::fs::symlink_metadata(admin).is_ok_and(|metadata| metadata.is_dir());
    let in_worktrees = admin.parent() == Some(places.common_dir.join("worktrees").as_path());
    let names_us = read_small(&admin.join("gitdir"))
        .is_ok_and(|text| resolve(admin, &text) == places.worktree.join(".git"));
    (is_real_dir && in_worktrees && names_us).then(|| admin.clone())
}

/// The directory a worktree's `.git` file names (`gitdir: <path>`, relative to the worktree when
/// not absolute).
fn gitdir_of(worktree: &Path) -> Result<PathBuf, String> {
    let contents = read_small(&worktree.join(".git")).map_err(|p| format!("its .git {p}"))?;
    let Some(target) = contents.strip_prefix(b"gitdir: ") else {
        return Err("its .git is not a `gitdir:` file".into());
    };
    Ok(resolve(worktree, target))
}

/// `text` as a path, relative to `base` unless absolute.
fn resolve(base: &Path, text: &[u8]) -> PathBuf {
    let path = path_from_bytes(text);
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

/// The first line of a small plain file (at most 4 KiB read); a link or directory is refused.
fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_file() => {}
        Ok(_) => return Err("is not a plain file".into()),
        Err(e) => return Err(format!("cannot be read ({e})")),
    }
    let mut contents = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(4096).read_to_end(&mut contents))
        .map_err(|e| format!("cannot be read ({e})"))?;
    let line = contents
        .split(|byte| *byte == b'\n')
        .next()
        .unwrap_or_default();
    Ok(line.strip_suffix(b"\r").unwrap_or(line).to_vec())
}

/// A path from bytes git printed or orch recorded; kept as bytes on unix, where paths need not
/// be UTF-8.
pub(super) fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(std::ffi::OsString::from(
            String::from_utf8_lossy(bytes)
                .trim_end_matches('\r')
                .to_string(),
        ))
    }
}
