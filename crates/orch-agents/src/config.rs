//! Agent settings: which real CLIs may run, how each is invoked, limits and prices.
//!
//! They are the `[agents]` table of orch's config (the global `<home>/config.toml` merged under
//! a project's `.orch.toml`). Everything is optional; by default only `sim` runs, because a real
//! CLI spends money and acts on the machine (seed 1's `ENABLE_REAL_CLI`).
//!
//! ```toml
//! [agents]
//! enable_real_cli = true
//! allowed = ["claude", "codex"]          # empty: every known agent
//! min_versions = { claude = "2.1.0" }
//! stall_timeout = "10m"
//! result_grace = "5s"
//!
//! [agents.claude]
//! model = "claude-sonnet-4-5"
//! pass_env = ["MY_PROXY_TOKEN"]           # besides the adapter's defaults
//! isolate = true                          # own per-task config dir
//!
//! [agents.commands.aider]
//! argv = ["aider", "--yes", "--model", "{model}", "--message", "{prompt}"]
//! output = "text"
//!
//! [agents.commands.opencode-acp]            # any Agent Client Protocol agent
//! argv = ["opencode", "acp"]
//! output = "acp"
//!
//! [agents.pricing."gpt-5.5"]
//! input_per_mtok = 1.25
//! output_per_mtok = 10.0
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::pricing::Price;
use crate::AgentError;

/// The `[agents]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// Run real agent CLIs at all. Off by default: only `sim` runs.
    pub enable_real_cli: bool,
    /// The agents that may run when real CLIs are enabled; empty means every known agent.
    pub allowed: Vec<String>,
    /// The oldest version accepted per agent (`orch agents` and claim-time checks use it).
    pub min_versions: BTreeMap<String, String>,
    /// A CLI that prints nothing (stdout or stderr) for this long is killed as `stalled`.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// After a CLI's final result, how long it may take to exit before orch ends it.
    #[serde(with = "humantime_serde")]
    pub result_grace: Duration,
    /// Claude Code.
    pub claude: AgentSettings,
    /// Codex CLI.
    pub codex: AgentSettings,
    /// OpenCode.
    pub opencode: AgentSettings,
    /// Gemini CLI.
    pub gemini: AgentSettings,
    /// User-defined command agents, by name.
    pub commands: BTreeMap<String, CommandAgent>,
    /// Prices per model, for CLIs that do not report cost themselves.
    pub pricing: BTreeMap<String, Price>,
    /// Where agents run: `direct` (a child process, the default) or `tmux` (a live session
    /// named after the task, for `orch task attach|live|kill`). Agents can override it.
    pub session: SessionMode,
}

/// Where an agent process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    /// A child process of the worker.
    #[default]
    Direct,
    /// Inside a tmux session named `orch-task-<id>` on orch's own tmux server.
    Tmux,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            enable_real_cli: false,
            allowed: Vec::new(),
            min_versions: BTreeMap::new(),
            stall_timeout: Duration::from_secs(10 * 60),
            result_grace: Duration::from_secs(5),
            claude: AgentSettings::default(),
            codex: AgentSettings::default(),
            opencode: AgentSettings::default(),
            gemini: AgentSettings::default(),
            commands: BTreeMap::new(),
            pricing: BTreeMap::new(),
            session: SessionMode::Direct,
        }
    }
}

/// How one real CLI is invoked.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    /// The program: a name looked up on `PATH`, or a path. Default: the agent's usual binary.
    pub binary: Option<String>,
    /// The model when a step names none.
    pub model: Option<String>,
    /// Extra arguments, placed before the prompt.
    pub args: Vec<String>,
    /// Variables set for the CLI, with these values.
    pub env: BTreeMap<String, String>,
    /// Variables passed through from orch's environment by name (API keys, base URLs), besides
    /// the adapter's defaults.
    pub pass_env: Vec<String>,
    /// Give the CLI its own state directory per task (config, sessions) instead of the user's.
    pub isolate: bool,
    /// Overrides `[agents] stall_timeout` for this agent.
    #[serde(with = "humantime_serde::option")]
    pub stall_timeout: Option<Duration>,
    /// Most agent turns per session, where the CLI supports it.
    pub max_turns: Option<u32>,
    /// Tools the agent may use (the adapter has a default for headless work).
    pub allowed_tools: Vec<String>,
    /// Tools the agent must not use.
    pub disallowed_tools: Vec<String>,
    /// Overrides `[agents] session` for this agent.
    pub session: Option<SessionMode>,
}

/// A user-defined agent: any program, given the prompt through an argv template.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandAgent {
    /// The command line; `{prompt}`, `{model}`, `{workdir}` and `{session}` are replaced in each
    /// argument (an argument that is only `{session}` is dropped when there is no session).
    pub argv: Vec<String>,
    /// What the program prints.
    #[serde(default)]
    pub output: OutputFormat,
    /// Variables set for it.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables passed through by name.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// The model when a step names none.
    #[serde(default)]
    pub model: Option<String>,
    /// Overrides `[agents] stall_timeout`.
    #[serde(default, with = "humantime_serde::option")]
    pub stall_timeout: Option<Duration>,
    /// Overrides `[agents] session`.
    #[serde(default)]
    pub session: Option<SessionMode>,
}

/// What a command agent prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// Plain text: every line is an assistant message; all of stdout is the result.
    #[default]
    Text,
    /// One JSON object per line in orch's normalized event format (the lines of
    /// `events.jsonl`); lines that are not are kept as `unknown` events.
    Jsonl,
    /// The Agent Client Protocol (JSON-RPC on stdin/stdout): orch sends the prompt as a
    /// `session/prompt` instead of through `{prompt}` (see [`crate::cli::acp`]).
    Acp,
}

impl AgentsConfig {
    /// Refuse `name` unless config lets it run. `sim` always may.
    pub fn check_enabled(&self, name: &str) -> Result<(), AgentError> {
        if name == "sim" {
            return Ok(());
        }
        if !self.enable_real_cli {
            return Err(AgentError::Unavailable {
                agent: name.to_owned(),
                reason: "real agent CLIs are disabled; set `enable_real_cli = true` under `[agents]` in the config (or ORCH_ENABLE_REAL_CLI=1), or use `sim`".to_owned(),
            });
        }
        if !self.allowed.is_empty() && !self.allowed.iter().any(|a| a == name) {
            return Err(AgentError::Unavailable {
                agent: name.to_owned(),
                reason: format!(
                    "it is not in `[agents] allowed` ({}); add it there to let it run",
                    self.allowed.join(", ")
                ),
            });
        }
        Ok(())
    }

    /// Apply `ORCH_ENABLE_REAL_CLI` and `ORCH_ALLOWED_AGENTS` (comma-separated) from `lookup`.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        if let Some(raw) = lookup("ORCH_ENABLE_REAL_CLI").filter(|v| !v.trim().is_empty()) {
            self.enable_real_cli = match raw.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                other => {
                    return Err(format!(
                        "ORCH_ENABLE_REAL_CLI={other} is not a yes or no; use 1 or 0"
                    ))
                }
            };
        }
        if let Some(raw) = lookup("ORCH_ALLOWED_AGENTS").filter(|v| !v.trim().is_empty()) {
            self.allowed = raw
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
        }
        Ok(())
    }

    /// The settings of a built-in CLI agent.
    pub fn settings(&self, name: &str) -> Option<&AgentSettings> {
        match name {
            "claude" => Some(&self.claude),
            "codex" => Some(&self.codex),
            "opencode" => Some(&self.opencode),
            "gemini" => Some(&self.gemini),
            _ => None,
        }
    }

    /// Every agent name config knows: the built-ins, then the command agents.
    pub fn agent_names(&self) -> Vec<String> {
        let mut names: Vec<String> = ["sim", "claude", "codex", "opencode", "gemini"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        names.extend(self.commands.keys().cloned());
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_allow_only_sim() {
        let config = AgentsConfig::default();
        assert!(config.check_enabled("sim").is_ok());
        let error = config.check_enabled("claude").unwrap_err().to_string();
        assert!(error.contains("enable_real_cli"), "{error}");
    }

    #[test]
    fn the_allowlist_limits_real_agents() {
        let config: AgentsConfig =
            toml::from_str("enable_real_cli = true\nallowed = [\"codex\"]\n").unwrap();
        assert!(config.check_enabled("codex").is_ok());
        let error = config.check_enabled("claude").unwrap_err().to_string();
        assert!(error.contains("not in `[agents] allowed`"), "{error}");
    }

    #[test]
    fn durations_and_commands_parse() {
        let config: AgentsConfig = toml::from_str(
            "stall_timeout = \"90s\"\n[claude]\nstall_timeout = \"2m\"\n[commands.echo]\nargv = [\"echo\", \"{prompt}\"]\noutput = \"jsonl\"\n",
        )
        .unwrap();
        assert_eq!(config.stall_timeout, Duration::from_secs(90));
        assert_eq!(config.claude.stall_timeout, Some(Duration::from_secs(120)));
        assert_eq!(config.commands["echo"].output, OutputFormat::Jsonl);
        let acp: CommandAgent =
            toml::from_str("argv = [\"opencode\", \"acp\"]\noutput = \"acp\"\n").unwrap();
        assert_eq!(acp.output, OutputFormat::Acp);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = toml::from_str::<AgentsConfig>("enable_real_clis = true\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("enable_real_clis"), "{error}");
    }

    #[test]
    fn env_overrides_apply() {
        let mut config = AgentsConfig::default();
        config
            .apply_env(|name| match name {
                "ORCH_ENABLE_REAL_CLI" => Some("1".into()),
                "ORCH_ALLOWED_AGENTS" => Some("claude, codex".into()),
                _ => None,
            })
            .unwrap();
        assert!(config.enable_real_cli);
        assert_eq!(config.allowed, vec!["claude", "codex"]);
        assert!(config
            .apply_env(|_| Some("maybe".into()))
            .unwrap_err()
            .contains("ORCH_ENABLE_REAL_CLI=maybe"));
    }
}
