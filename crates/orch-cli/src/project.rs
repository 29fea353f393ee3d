//! Which project a command's tasks go to: `--project DIR`, else (for `orch run`) the workflow
//! file's `project:`, else the repository (or directory) the command is started in — never the
//! place a file happens to live.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config;
use crate::UserError;

/// The project of a directory the user named (`what`: `--project`, or `<file>: project`): it
/// must exist and be a directory; the repository containing it is the project.
pub fn named(what: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => config::project_root(dir),
        Ok(_) => Err(UserError::new(format!(
            "{what} {}: this is a file, not a directory; give the project's directory",
            dir.display()
        ))
        .into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(UserError::new(format!(
            "{what} {}: no such directory; give an existing project directory",
            dir.display()
        ))
        .into()),
        Err(e) => Err(UserError::new(format!("{what} {}: {e}", dir.display())).into()),
    }
}

/// The project the current directory is in: the nearest enclosing repository (or directory
/// with `.orch.toml`), else the current directory itself.
pub fn current() -> anyhow::Result<PathBuf> {
    config::project_root(&std::env::current_dir().context("read the current directory")?)
}

/// The project of `orch run FILE`: `--project`, else the file's `project:` (relative to the
/// file's directory), else the current directory's.
pub fn of_workflow(
    flag: Option<&Path>,
    file: &Path,
    named_in_file: Option<&str>,
) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return named("--project", dir);
    }
    if let Some(raw) = named_in_file {
        let base = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = base.join(raw.trim());
        return named(&format!("{}: project", file.display()), &dir);
    }
    current()
}
