//! The file tools of `sim`, confined to the workdir.
//!
//! Every path goes through two checks before anything is written: a lexical one (relative, no
//! `..` above the workdir) and one on the disk (the deepest existing ancestor, and a symlink in
//! the final place, must resolve inside the workdir). The operation then uses the normalized
//! path, so the OS never sees a `..` that the lexical check did not.
//!
//! The checks and the write are not atomic: something else racing to swap a directory for a
//! symlink in between could still redirect a write. `sim` is a test double run on worktrees
//! that orch owns, so it guards against prompts, not against a hostile neighbour process.
//!
//! Everything here is blocking; the caller runs it on the blocking thread pool.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Component, Path, PathBuf};

/// Why a file tool did not do its work.
#[derive(Debug)]
pub(crate) enum ToolError {
    /// The prompt asked for something sim refuses or that cannot be done (an escape, a missing
    /// file, missing text): the prompt's mistake.
    Refused(String),
    /// The file system failed under a reasonable request.
    Io { context: String, source: io::Error },
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::Refused(message) => f.write_str(message),
            ToolError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

/// What a file tool did: the file it changed (relative, `/`-separated) and a line for the
/// tool result.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) changed: String,
    pub(crate) output: String,
}

/// A workdir, canonicalized once so every later containment check compares real paths.
#[derive(Debug, Clone)]
pub(crate) struct Workdir {
    root: PathBuf,
}

/// A path inside the workdir: how it is shown and where it really is.
struct Target {
    shown: String,
    absolute: PathBuf,
}

impl Workdir {
    /// Open an existing directory.
    pub(crate) fn open(path: &Path) -> io::Result<Workdir> {
        let root = fs::canonicalize(path)?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(Workdir { root })
    }

    /// `@write`: create or overwrite the file, creating its parent directories.
    pub(crate) fn write_file(&self, raw: &str, content: &str) -> Result<Done, ToolError> {
        let target = self.resolve_for_edit(raw)?;
        let existed = target.absolute.exists();
        create_parents(&target)?;
        fs::write(&target.absolute, content)
            .map_err(|source| io_error("write", &target, source))?;
        let verb = if existed { "overwrote" } else { "created" };
        Ok(Done {
            output: format!("{verb} `{}` ({} bytes)", target.shown, content.len()),
            changed: target.shown,
        })
    }

    /// `@append`: add `content` at the end, on a line of its own, creating the file if missing.
    pub(crate) fn append_file(&self, raw: &str, content: &str) -> Result<Done, ToolError> {
        let target = self.resolve_for_edit(raw)?;
        // Appended content is lines; gluing them onto an unterminated last line would corrupt it.
        let needs_newline = match fs::read(&target.absolute) {
            Ok(existing) => existing.last().is_some_and(|last| *last != b'\n'),
            Err(source) if source.kind() == io::ErrorKind::NotFound => false,
            Err(source) => return Err(io_error("read", &target, source)),
        };
        create_parents(&target)?;
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&target.absolute)
            .map_err(|source| io_error("open", &target, source))?;
        let separator = if needs_newline { "\n" } else { "" };
        file.write_all(format!("{separator}{content}").as_bytes())
            .map_err(|source| io_error("append to", &target, source))?;
        Ok(Done {
            output: format!("appended {} bytes to `{}`", content.len(), target.shown),
            changed: target.shown,
        })
    }

    /// `@replace`: replace the first occurrence of `old` by `new`.
    pub(crate) fn replace_in_file(
        &self,
        raw: &str,
        old: &str,
        new: &str,
    ) -> Result<Done, ToolError> {
        let target = self.resolve_for_edit(raw)?;
        let text = match fs::read_to_string(&target.absolute) {
            Ok(text) => text,
            Err(source) if source.kind() == io::ErrorKind::NotFound => {
                return Err(ToolError::Refused(format!(
                    "`{}` does not exist; create it first with `@write`",
                    target.shown
                )))
            }
            Err(source) if source.kind() == io::ErrorKind::InvalidData => {
                return Err(ToolError::Refused(format!(
                    "`{}` is not UTF-8 text; sim replaces text only",
                    target.shown
                )))
            }
            Err(source) => return Err(io_error("read", &target, source)),
        };
        if !text.contains(old) {
            return Err(ToolError::Refused(format!(
                "`{old}` does not occur in `{}`; nothing was replaced",
                target.shown
            )));
        }
        fs::write(&target.absolute, text.replacen(old, new, 1))
            .map_err(|source| io_error("write", &target, source))?;
        Ok(Done {
            output: format!("replaced the first `{old}` in `{}`", target.shown),
            changed: target.shown,
        })
    }

    /// `@delete`: remove a file (a symlink is removed itself, never its target).
    pub(crate) fn delete_file(&self, raw: &str) -> Result<Done, ToolError> {
        let target = self.resolve_for_delete(raw)?;
        match fs::symlink_metadata(&target.absolute) {
            Ok(metadata) if metadata.is_dir() => {
                return Err(ToolError::Refused(format!(
                    "`{}` is a directory; sim deletes files only",
                    target.shown
                )))
            }
            Ok(_) => {}
            Err(source) if source.kind() == io::ErrorKind::NotFound => {
                return Err(ToolError::Refused(format!(
                    "`{}` does not exist",
                    target.shown
                )))
            }
            Err(source) => return Err(io_error("inspect", &target, source)),
        }
        fs::remove_file(&target.absolute).map_err(|source| io_error("delete", &target, source))?;
        Ok(Done {
            output: format!("deleted `{}`", target.shown),
            changed: target.shown,
        })
    }

    /// A target that will be written through: a symlink in the final place is followed, so it
    /// must resolve inside the workdir too, and the file reported changed is its real target.
    fn resolve_for_edit(&self, raw: &str) -> Result<Target, ToolError> {
        let target = self.resolve_for_delete(raw)?;
        let is_symlink = fs::symlink_metadata(&target.absolute)
            .map(|metadata| metadata.file_type().is_symlink())
            .unwrap_or(false);
        if !is_symlink {
            return Ok(target);
        }
        let real = fs::canonicalize(&target.absolute).map_err(|_| {
            ToolError::Refused(format!(
                "`{raw}` is a symlink to a missing file; sim does not write through it"
            ))
        })?;
        let Ok(inside) = real.strip_prefix(&self.root) else {
            return Err(ToolError::Refused(format!(
                "`{raw}` is a symlink that points outside the workdir; nothing was written"
            )));
        };
        Ok(Target {
            shown: slash_separated(inside),
            absolute: real,
        })
    }

    /// A target whose final component is used as it is (not followed): lexically inside the
    /// workdir, and its deepest existing ancestor really inside it.
    fn resolve_for_delete(&self, raw: &str) -> Result<Target, ToolError> {
        let parts = normalize(raw)?;
        // Canonicalizing the deepest existing ancestor resolves every symlink above the target;
        // the components below it do not exist yet, so they cannot be symlinks.
        for depth in (0..parts.len()).rev() {
            let ancestor: PathBuf = parts[..depth].iter().collect();
            let on_disk = self.root.join(&ancestor);
            if fs::symlink_metadata(&on_disk).is_err() {
                continue;
            }
            let real = fs::canonicalize(&on_disk).map_err(|_| {
                ToolError::Refused(format!(
                    "`{raw}` goes through `{}`, a symlink to nothing; nothing was written",
                    slash_separated(&ancestor)
                ))
            })?;
            if !real.starts_with(&self.root) {
                return Err(ToolError::Refused(format!(
                    "`{raw}` leaves the workdir: `{}` resolves outside it through a symlink; nothing was written",
                    slash_separated(&ancestor)
                )));
            }
            break;
        }
        let relative: PathBuf = parts.iter().collect();
        Ok(Target {
            shown: slash_separated(&relative),
            absolute: self.root.join(relative),
        })
    }
}

/// The components of a relative path with `.` dropped and `..` applied, refused when absolute,
/// empty, or climbing above the workdir.
fn normalize(raw: &str) -> Result<Vec<&str>, ToolError> {
    let path = Path::new(raw);
    if path.has_root() || path.is_absolute() {
        return Err(ToolError::Refused(format!(
            "`{raw}` is an absolute path; give a path relative to the workdir"
        )));
    }
    let mut parts: Vec<&str> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(part) => parts.push(
                part.to_str()
                    .expect("every component of a path made from a &str is UTF-8"),
            ),
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(ToolError::Refused(format!(
                        "`{raw}` leaves the workdir through `..`; nothing was written"
                    )));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ToolError::Refused(format!(
                    "`{raw}` is an absolute path; give a path relative to the workdir"
                )))
            }
        }
    }
    if parts.is_empty() {
        return Err(ToolError::Refused(format!(
            "`{raw}` names the workdir itself; give a file path"
        )));
    }
    Ok(parts)
}

/// Paths in events and `changed_files` use `/` on every OS, like git.
fn slash_separated(path: &Path) -> String {
    path.components()
        .map(|component| component.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn create_parents(target: &Target) -> Result<(), ToolError> {
    match target.absolute.parent() {
        Some(parent) => fs::create_dir_all(parent).map_err(|source| ToolError::Io {
            context: format!("create the directories of `{}`", target.shown),
            source,
        }),
        None => Ok(()),
    }
}

fn io_error(verb: &str, target: &Target, source: io::Error) -> ToolError {
    ToolError::Io {
        context: format!("{verb} `{}`", target.shown),
        source,
    }
}
