//! Settings for running a project's tasks: the global `<home>/config.toml`, with the project's
//! own `.orch.toml` at its root merged over it (table by table, key by key), then `ORCH_*`
//! environment overrides. Every key is optional.

use std::collections::BTreeMap;
use std::path::Path;

use orch_agents::profile::Profile;
use orch_agents::review::ReviewConfig;
use orch_agents::router::{self, ModelMap, RouterConfig, RoutingConfig};
use serde::Deserialize;

use crate::sandbox::SandboxSettings;

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

/// A size in bytes, written in config as a number of bytes or a text such as `512MiB`, `1GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// `512MiB`, `2GiB`, `64KiB`, `1000` (bytes); `K`, `M`, `G`, `T` mean the same powers of
    /// 1024.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a size; write e.g. 512MiB, 2GiB or 1048576"))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" | "kb" => 1 << 10,
            "m" | "mib" | "mb" => 1 << 20,
            "g" | "gib" | "gb" => 1 << 30,
            "t" | "tib" | "tb" => 1 << 40,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` in `{text}`; use KiB, MiB, GiB or TiB"
                ))
            }
        };
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("`{text}` is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bytes(bytes) => Ok(ByteSize(bytes)),
            Raw::Text(text) => ByteSize::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// The project's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectConfig {
    /// The branch worktrees start from (default: the repository's current HEAD branch).
    pub base_branch: Option<String>,
    /// For a directory that is not a git repository.
    pub non_git: NonGitMode,
    /// The largest project copy mode copies (`copy_max_size = "1GiB"`, or a number of bytes;
    /// `ORCH_COPY_MAX_SIZE` overrides it).
    pub copy_max_size: ByteSize,
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
    /// Agent adapters: which real CLIs may run and how (see `orch_agents::config`).
    pub agents: orch_agents::AgentsConfig,
    /// `[router]`: how `agent: auto` steps are routed.
    pub router: RouterConfig,
    /// `[model_map]`: the model per complexity and agent.
    pub model_map: ModelMap,
    /// `[profiles.<name>]`: named agent profiles.
    pub profiles: BTreeMap<String, Profile>,
    /// `[review]`: the optional reviewer.
    pub review: ReviewConfig,
    /// `[concurrency]`: running tasks per project, agent and label (global file only).
    pub concurrency: orch_core::limits::ConcurrencyLimits,
    /// `[budgets]`: daily limits per project and agent (global file only).
    pub budgets: orch_core::limits::DailyBudgets,
    /// The agent of tasks given only a title and body (default: routed, `auto`).
    pub default_agent: Option<String>,
    /// `[forge]`: the project's repository on GitHub and how orch writes to it.
    pub forge: Option<orch_core::forge::ForgeFile>,
    /// `sandbox`, `[limits]` and `sandbox_read`, combined across the layers by their own rules
    /// (a project may only tighten; see [`SandboxSettings::from_layers`]).
    #[serde(skip)]
    pub sandbox: SandboxSettings,
    /// `[approval]`: tasks whose labels or commands match wait for a human. The rules of
    /// `config.toml` and `.orch.toml` add up (a project cannot drop the home's rules).
    #[serde(skip)]
    pub approval: orch_core::approval::ApprovalPolicy,
    /// How long an unanswered info request waits before its task goes to `needs_review`
    /// (`input_timeout = "24h"`, the default; `"never"`).
    pub input_timeout: crate::run::InputTimeout,
    /// The most child tasks one plan may make (`max_plan_children = 20`, the default; at most
    /// `orch_core::planner::MAX_PLAN_ITEMS_CEILING`; global file only).
    pub max_plan_children: orch_core::planner::MaxPlanChildren,
}

impl Default for ProjectConfig {
    fn default() -> Self {
        ProjectConfig {
            base_branch: None,
            non_git: NonGitMode::Copy,
            copy_max_size: ByteSize(crate::workspace::DEFAULT_COPY_MAX_BYTES),
            allow_shell: false,
            env_allowlist: Vec::new(),
            secret_env: Vec::new(),
            output_cap_bytes: 16 * 1024 * 1024,
            auto_commit: true,
            agents: orch_agents::AgentsConfig::default(),
            router: RouterConfig::default(),
            model_map: ModelMap::default(),
            profiles: BTreeMap::new(),
            review: ReviewConfig::default(),
            concurrency: Default::default(),
            budgets: Default::default(),
            default_agent: None,
            forge: None,
            sandbox: SandboxSettings::default(),
            approval: orch_core::approval::ApprovalPolicy::default(),
            input_timeout: crate::run::InputTimeout::default(),
            max_plan_children: Default::default(),
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
    /// The label that asks for a plan (`[forge] plan_label`, default `plan`).
    pub fn plan_label(&self) -> String {
        self.forge
            .as_ref()
            .and_then(|forge| forge.plan_label.clone())
            .unwrap_or_else(|| orch_core::planner::DEFAULT_PLAN_LABEL.to_owned())
    }

    /// How a plan becomes children here: `plan_label` (from [`ProjectConfig::plan_label`]),
    /// the default agent and `max_plan_children`.
    pub fn plan_rules<'a>(&'a self, plan_label: &'a str) -> orch_core::planner::PlanRules<'a> {
        orch_core::planner::PlanRules {
            plan_label,
            default_agent: self.default_agent.as_deref(),
            max_children: self.max_plan_children,
        }
    }

    /// Load `<dir>/.orch.toml`, or the defaults when there is none (no global file, no
    /// environment overrides; see [`ProjectConfig::load_merged`]).
    pub fn load(dir: &Path) -> Result<ProjectConfig, ProjectConfigError> {
        Self::load_layers(None, dir, &|_| None)
    }

    /// The settings a worker runs a project's tasks with: `<home>/config.toml`, then
    /// `<dir>/.orch.toml` over it, then `ORCH_ENABLE_REAL_CLI` / `ORCH_ALLOWED_AGENTS`,
    /// `ORCH_SANDBOX` and `ORCH_SANDBOX_UNSUPPORTED`.
    pub fn load_merged(home: &Path, dir: &Path) -> Result<ProjectConfig, ProjectConfigError> {
        Self::load_layers(Some(&home.join("config.toml")), dir, &|name| {
            std::env::var(name).ok()
        })
    }

    /// The settings of the home alone (`<home>/config.toml` and the environment), as every
    /// project starts from: `orch serve` checks them at start-up, so a broken file stops it
    /// there rather than failing each task.
    pub fn load_global(home: &Path) -> Result<ProjectConfig, ProjectConfigError> {
        // The home is never a project, so it has no `.orch.toml` of its own to merge.
        Self::load_layers(Some(&home.join("config.toml")), home, &|name| {
            std::env::var(name).ok()
        })
    }

    fn load_layers(
        global: Option<&Path>,
        dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ProjectConfig, ProjectConfigError> {
        let project = dir.join(".orch.toml");
        let shown = match global {
            Some(global) => format!("{} + {}", global.display(), project.display()),
            None => project.display().to_string(),
        };
        let mut global_table = match global {
            Some(path) => read_table(path)?.unwrap_or_default(),
            None => toml::Table::new(),
        };
        // `database` is the CLI's (orch-cli's config.rs reads it); a project's `.orch.toml`
        // may not choose the database, so there it stays an unknown key.
        global_table.remove("database");
        let mut project_table = read_table(&project)?.unwrap_or_default();
        // Limits are the operator's: a project (whose files a task may change and land) must
        // not raise its own.
        for key in ["concurrency", "budgets", "max_plan_children"] {
            if project_table.contains_key(key) {
                let shown = if key == "max_plan_children" {
                    key.to_owned()
                } else {
                    format!("[{key}]")
                };
                return Err(ProjectConfigError {
                    path: project.display().to_string(),
                    message: format!(
                        "`{shown}` may only be set in the global config.toml (a project cannot \
                         change its own limits); move it there"
                    ),
                });
            }
        }
        let sandbox = SandboxSettings::from_layers(&mut global_table, &mut project_table, env)
            .map_err(|message| ProjectConfigError {
                path: shown.clone(),
                message,
            })?;
        let approval = approval_layer(&shown, &mut global_table)?
            .union(approval_layer(&shown, &mut project_table)?);
        let mut merged = global_table;
        merge(&mut merged, project_table);
        let mut config: ProjectConfig =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| ProjectConfigError {
                    path: shown.clone(),
                    message: e.to_string(),
                })?;
        config.validate().map_err(|message| ProjectConfigError {
            path: shown.clone(),
            message,
        })?;
        config.sandbox = sandbox;
        config.approval = approval;
        if let Some(forge) = &config.forge {
            // The forge's credentials are orch's: no step may read them, wherever they are.
            config.sandbox.secret_files.extend(
                [&forge.token_file, &forge.private_key_file]
                    .into_iter()
                    .flatten()
                    .map(std::path::PathBuf::from),
            );
            check_forge_secrets(forge, dir, &config).map_err(|message| ProjectConfigError {
                path: shown.clone(),
                message,
            })?;
        }
        if let Some(text) = env("ORCH_COPY_MAX_SIZE") {
            config.copy_max_size =
                ByteSize::parse(&text).map_err(|message| ProjectConfigError {
                    path: "the environment".into(),
                    message: format!("ORCH_COPY_MAX_SIZE: {message}"),
                })?;
        }
        config
            .agents
            .apply_env(env)
            .map_err(|message| ProjectConfigError {
                path: "the environment".into(),
                message,
            })?;
        Ok(config)
    }
}

/// Take `[approval]` out of one layer (layers add their rules up rather than replace them).
fn approval_layer(
    shown: &str,
    table: &mut toml::Table,
) -> Result<orch_core::approval::ApprovalPolicy, ProjectConfigError> {
    let Some(value) = table.remove("approval") else {
        return Ok(orch_core::approval::ApprovalPolicy::default());
    };
    let policy: orch_core::approval::ApprovalPolicy =
        value
            .try_into()
            .map_err(|e: toml::de::Error| ProjectConfigError {
                path: shown.to_owned(),
                message: format!("[approval]: {e}"),
            })?;
    policy.validate().map_err(|message| ProjectConfigError {
        path: shown.to_owned(),
        message,
    })?;
    Ok(policy)
}

/// The forge's credentials must stay out of every step's reach: its files absolute and outside
/// the project (which steps read), its variable not passed to steps.
fn check_forge_secrets(
    forge: &orch_core::forge::ForgeFile,
    project_dir: &Path,
    config: &ProjectConfig,
) -> Result<(), String> {
    for (key, file) in [
        ("token_file", &forge.token_file),
        ("private_key_file", &forge.private_key_file),
    ] {
        let Some(file) = file else { continue };
        let path = Path::new(file);
        if !path.is_absolute() {
            return Err(format!(
                "forge.{key} = \"{file}\" is not an absolute path; give the file's full path"
            ));
        }
        let inside = |dir: &Path| {
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
            let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
            path.starts_with(dir)
        };
        if inside(project_dir) {
            return Err(format!(
                "forge.{key} = \"{file}\" lies inside the project, which every task can read; \
                 keep the credential outside it (e.g. under ~/.config)"
            ));
        }
    }
    if let Some(name) = &forge.token_env {
        if config.env_allowlist.contains(name) || config.secret_env.contains(name) {
            return Err(format!(
                "forge.token_env = \"{name}\" is also passed to steps (env_allowlist or \
                 secret_env); remove it there, since only orch may use the forge's token"
            ));
        }
    }
    Ok(())
}

fn read_table(path: &Path) -> Result<Option<toml::Table>, ProjectConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .parse::<toml::Table>()
            .map(Some)
            .map_err(|e| ProjectConfigError {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ProjectConfigError {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

/// `over` wins key by key; tables merge recursively, everything else (arrays too) is replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(over_table)) => {
                merge(base_table, over_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
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
            agents: &self.agents,
        }
    }

    /// Checks across keys that serde cannot express (names that must exist, numbers >= 1).
    pub fn validate(&self) -> Result<(), String> {
        router::validate(self.routing())?;
        self.review.validate()?;
        if let Some(agent) = &self.default_agent {
            let known = agent == "auto"
                || orch_agents::known_agents().contains(&agent.as_str())
                || self.agents.commands.contains_key(agent);
            if !known {
                return Err(format!(
                    "default_agent = \"{agent}\" is not an agent orch knows; use one of {}, \
                     `auto` to route, or define [agents.commands.{agent}]",
                    orch_agents::known_agents().join(", ")
                ));
            }
        }
        if let Some(forge) = &self.forge {
            forge.check_keys()?;
        }
        self.claim_limits().map(drop)
    }

    /// The claim-time limits of `[concurrency]` and `[budgets]`, checked.
    pub fn claim_limits(&self) -> Result<orch_core::limits::ClaimLimits, String> {
        orch_core::limits::ClaimLimits::new(self.concurrency.clone(), self.budgets.clone())
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

    #[test]
    fn the_project_file_merges_over_the_global_one_key_by_key() {
        let home = tempfile::tempdir().unwrap();
        let project = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("config.toml"),
            "allow_shell = true\n[agents]\nenable_real_cli = true\nallowed = [\"claude\"]\n[agents.claude]\nmodel = \"opus\"\n",
        )
        .unwrap();
        std::fs::write(
            project.path().join(".orch.toml"),
            "[agents]\nallowed = [\"codex\"]\n[agents.claude]\nisolate = true\n",
        )
        .unwrap();
        let config = ProjectConfig::load_layers(
            Some(&home.path().join("config.toml")),
            project.path(),
            &|_| None,
        )
        .unwrap();
        assert!(config.allow_shell);
        assert!(config.agents.enable_real_cli);
        assert_eq!(config.agents.allowed, vec!["codex"]);
        assert_eq!(config.agents.claude.model.as_deref(), Some("opus"));
        assert!(config.agents.claude.isolate);
    }

    #[test]
    fn environment_overrides_come_last_and_bad_keys_name_both_files() {
        let home = tempfile::tempdir().unwrap();
        let project = tempfile::tempdir().unwrap();
        let config = ProjectConfig::load_layers(
            Some(&home.path().join("config.toml")),
            project.path(),
            &|name| (name == "ORCH_ENABLE_REAL_CLI").then(|| "yes".to_owned()),
        )
        .unwrap();
        assert!(config.agents.enable_real_cli);
        std::fs::write(project.path().join(".orch.toml"), "[agents]\nenable = 1\n").unwrap();
        let error = ProjectConfig::load_layers(
            Some(&home.path().join("config.toml")),
            project.path(),
            &|_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("enable") && error.contains(".orch.toml"),
            "{error}"
        );
    }

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
    fn forge_credentials_within_a_steps_reach_are_refused_and_token_files_are_hidden() {
        let home = tempfile::tempdir().unwrap();
        let project = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            std::fs::write(project.path().join(".orch.toml"), text).unwrap();
            ProjectConfig::load_layers(
                Some(&home.path().join("config.toml")),
                project.path(),
                &|_| None,
            )
        };
        let inside = project.path().join("token");
        let error = load(&format!("[forge]\ntoken_file = \"{}\"\n", inside.display()))
            .unwrap_err()
            .to_string();
        assert!(error.contains("inside the project"), "{error}");
        let error = load("[forge]\ntoken_file = \"token\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("absolute"), "{error}");
        let error = load("env_allowlist = [\"GH_TOKEN\"]\n[forge]\ntoken_env = \"GH_TOKEN\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("passed to steps"), "{error}");
        let error = load("default_agent = \"gpt\"\n").unwrap_err().to_string();
        assert!(error.contains("default_agent"), "{error}");
        let outside = home.path().join("github-token");
        let config = load(&format!(
            "default_agent = \"sim\"\n[forge]\nrepo = \"octo/w\"\ntoken_file = \"{}\"\n",
            outside.display()
        ))
        .unwrap();
        assert_eq!(config.default_agent.as_deref(), Some("sim"));
        assert_eq!(config.sandbox.secret_files, vec![outside.clone()]);
        let policy = crate::sandbox::answer_policy(home.path(), &config.sandbox);
        assert!(policy.hidden.contains(&outside), "{:?}", policy.hidden);
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

#[cfg(test)]
mod plan_tests;
