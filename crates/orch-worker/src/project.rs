//! Per-project settings from `.orch.toml` at the project root. Every key is optional.

use std::collections::BTreeMap;
use std::path::Path;

use orch_agents::profile::Profile;
use orch_agents::review::ReviewConfig;
use orch_agents::router::{self, ModelMap, RouterConfig, RoutingConfig};
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
    /// `[router]`: how `agent: auto` steps are routed.
    pub router: RouterConfig,
    /// `[model_map]`: the model per complexity and agent.
    pub model_map: ModelMap,
    /// `[profiles.<name>]`: named agent profiles.
    pub profiles: BTreeMap<String, Profile>,
    /// `[review]`: the optional reviewer.
    pub review: ReviewConfig,
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
            router: RouterConfig::default(),
            model_map: ModelMap::default(),
            profiles: BTreeMap::new(),
            review: ReviewConfig::default(),
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
            Ok(text) => {
                let config: ProjectConfig =
                    toml::from_str(&text).map_err(|e| ProjectConfigError {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?;
                config.validate().map_err(|message| ProjectConfigError {
                    path: path.display().to_string(),
                    message,
                })?;
                Ok(config)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ProjectConfig::default()),
            Err(e) => Err(ProjectConfigError {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }
}

impl ProjectConfig {
    /// The routing sections, borrowed together.
    pub fn routing(&self) -> RoutingConfig<'_> {
        RoutingConfig {
            router: &self.router,
            model_map: &self.model_map,
            profiles: &self.profiles,
        }
    }

    /// Checks across keys that serde cannot express (names that must exist, numbers >= 1).
    pub fn validate(&self) -> Result<(), String> {
        router::validate(self.routing())?;
        self.review.validate()
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ProjectConfig, String> {
        let config: ProjectConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn the_routing_and_review_sections_parse_together() {
        let config = parse(
            r#"
            [router]
            agent = "sim"
            model = "fast"
            max_route_attempts = 2
            agents = ["sim", "claude"]
            [[router.rules]]
            label = "docs"
            agent = "sim"
            complexity = "simple"
            profile = "writer"
            [model_map.simple]
            claude = "haiku"
            [model_map.review]
            claude = "sonnet"
            [profiles.writer]
            role = "technical writer"
            skills = ["markdown"]
            [review]
            agent = "claude"
            max_review_rounds = 2
            "#,
        )
        .expect("valid");
        assert_eq!(config.router.rules.len(), 1);
        assert_eq!(
            config
                .review
                .model_for("claude", &config.model_map)
                .as_deref(),
            Some("sonnet")
        );
        assert_eq!(config.profiles["writer"].role, "technical writer");
    }

    #[test]
    fn unknown_keys_and_impossible_values_are_refused() {
        for (text, expected) in [
            ("[router]\nagnet = \"sim\"\n", "unknown field `agnet`"),
            ("[model_map.hard]\nsim = \"x\"\n", "unknown field `hard`"),
            (
                "[review]\nmax_review_rounds = 0\n",
                "max_review_rounds is 0",
            ),
            (
                "[[router.rules]]\nlabel = \"x\"\nprofile = \"ghost\"\n",
                "profile `ghost`",
            ),
        ] {
            let error = parse(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
