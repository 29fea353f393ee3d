//! Per-project settings from `.orch.toml` at the project root. Every key is optional.

use std::path::Path;

use serde::Deserialize;

/// What to do with a project directory that is not a git repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonGitMode {
    /// Copy the directory into the workspace.
    #[default]
    Copy,
    /// Stop the task as `needs_review`.
    NeedsReview,
    /// Fail the task.
    Fail,
}

/// The project's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectConfig {
    /// The branch worktrees start from (default: the repository's current HEAD branch).
    pub base_branch: Option<String>,
    /// For a directory that is not a git repository.
    pub non_git: NonGitMode,
    /// Allow shell entrypoints (`sh -c`, ...) in exec steps.
    pub allow_shell: bool,
    /// Environment variables passed through to commands (besides PATH, HOME, LANG, TERM, ...).
    pub env_allowlist: Vec<String>,
    /// Environment variables whose values are secrets: passed through, and redacted everywhere.
    pub secret_env: Vec<String>,
    /// Most bytes kept of one command's stdout (and again of its stderr).
    pub output_cap_bytes: u64,
    /// Commit the workspace's changes after the steps.
    pub auto_commit: bool,
}

impl Default for ProjectConfig {
    fn default() -> Self {
        ProjectConfig {
            base_branch: None,
            non_git: NonGitMode::Copy,
            allow_shell: false,
            env_allowlist: Vec::new(),
            secret_env: Vec::new(),
            output_cap_bytes: 16 * 1024 * 1024,
            auto_commit: true,
        }
    }
}

/// Why `.orch.toml` could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}; fix the file or remove the key")]
pub struct ProjectConfigError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ProjectConfig {
    /// Load `<dir>/.orch.toml`, or the defaults when there is none.
    pub fn load(dir: &Path) -> Result<ProjectConfig, ProjectConfigError> {
        let path = dir.join(".orch.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| ProjectConfigError {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ProjectConfig::default()),
            Err(e) => Err(ProjectConfigError {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }
}

impl ProjectConfig {
    /// The values of the environment variables this project marks secret (those that are set).
    /// They are passed to commands and agents, and redacted from everything orch stores.
    pub fn secret_values(&self) -> std::collections::BTreeMap<String, String> {
        self.secret_env
            .iter()
            .filter_map(|name| {
                std::env::var(name)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| (name.clone(), v))
            })
            .collect()
    }
}
