//! Isolated environments and config files for running each agent CLI against the model server.
//!
//! Each function takes the server's base URL (`http://127.0.0.1:PORT`) and a per-run directory,
//! writes the CLI's config files inside that directory and returns the environment variables to
//! set on the child (on top of the parent's `PATH`). Nothing is read from or written to the real
//! home directory. The measured facts behind these settings are in `NOTES.md`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether the CLI may retry failed requests (disable it for fast failure tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// The CLI's own retry policy.
    Default,
    /// No retries where the CLI allows turning them off.
    Disabled,
}

/// How a CLI run may fail: retries and a per-request timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Whether the CLI retries failed requests.
    pub retries: Retries,
    /// Give up on a model request with no answer after this long, where the CLI supports it
    /// (Claude `API_TIMEOUT_MS`, Codex `stream_idle_timeout_ms`, OpenCode provider `timeout`).
    pub request_timeout: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            retries: Retries::Default,
            request_timeout: None,
        }
    }
}

impl Settings {
    /// No retries and no timeout: for fast failure tests.
    pub fn no_retries() -> Settings {
        Settings {
            retries: Retries::Disabled,
            request_timeout: None,
        }
    }
}

/// Environment variables for one CLI run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CliEnv {
    /// Variables to set on the child process.
    pub vars: Vec<(String, String)>,
}

impl CliEnv {
    fn set(&mut self, name: &str, value: impl Into<String>) {
        self.vars.push((name.to_owned(), value.into()));
    }

    /// Applies the variables to a command.
    pub fn apply(&self, command: &mut std::process::Command) {
        command.envs(self.vars.iter().map(|(k, v)| (k, v)));
    }

    /// Applies the variables to a tokio command.
    pub fn apply_tokio(&self, command: &mut tokio::process::Command) {
        command.envs(self.vars.iter().map(|(k, v)| (k, v)));
    }
}

/// The API key every CLI is given; the server only records its presence.
pub const API_KEY: &str = "modelsim-key";
/// The model slug Codex is configured with (a known slug, so `apply_patch` is offered).
pub const CODEX_MODEL: &str = "gpt-5.5";
/// OpenCode's provider/model id.
pub const OPENCODE_MODEL: &str = "modelsim/scripted";

fn home(run_dir: &Path) -> io::Result<PathBuf> {
    let home = run_dir.join("home");
    std::fs::create_dir_all(&home)?;
    Ok(home)
}

/// Claude Code: `ANTHROPIC_BASE_URL`, an isolated `CLAUDE_CONFIG_DIR`, no nonessential traffic.
pub fn claude(base_url: &str, run_dir: &Path, settings: &Settings) -> io::Result<CliEnv> {
    let home = home(run_dir)?;
    let config = run_dir.join("claude-config");
    std::fs::create_dir_all(&config)?;
    let mut env = CliEnv::default();
    env.set("HOME", home.to_string_lossy());
    env.set("ANTHROPIC_BASE_URL", base_url);
    env.set("ANTHROPIC_API_KEY", API_KEY);
    env.set("CLAUDE_CONFIG_DIR", config.to_string_lossy());
    env.set("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
    env.set("DISABLE_TELEMETRY", "1");
    env.set("DISABLE_AUTOUPDATER", "1");
    env.set("DISABLE_ERROR_REPORTING", "1");
    if settings.retries == Retries::Disabled {
        env.set("CLAUDE_CODE_MAX_RETRIES", "0");
    }
    if let Some(timeout) = settings.request_timeout {
        env.set("API_TIMEOUT_MS", timeout.as_millis().to_string());
    }
    Ok(env)
}

/// Codex CLI: `CODEX_HOME` with a `config.toml` naming a custom `responses` provider.
pub fn codex(base_url: &str, run_dir: &Path, settings: &Settings) -> io::Result<CliEnv> {
    let home = home(run_dir)?;
    let codex_home = run_dir.join("codex-home");
    std::fs::create_dir_all(&codex_home)?;
    let mut provider_extra = String::new();
    if settings.retries == Retries::Disabled {
        provider_extra.push_str("request_max_retries = 0\nstream_max_retries = 0\n");
    }
    if let Some(timeout) = settings.request_timeout {
        provider_extra.push_str(&format!(
            "stream_idle_timeout_ms = {}\n",
            timeout.as_millis()
        ));
    }
    let config = format!(
        r#"model = "{CODEX_MODEL}"
model_provider = "modelsim"
check_for_update_on_startup = false

[model_providers.modelsim]
name = "modelsim"
base_url = "{base_url}/v1"
env_key = "MODELSIM_API_KEY"
wire_api = "responses"
{provider_extra}
[analytics]
enabled = false

[otel]
exporter = "none"
trace_exporter = "none"
metrics_exporter = "none"

[features]
plugins = false
remote_plugin = false
apps = false
"#
    );
    std::fs::write(codex_home.join("config.toml"), config)?;
    let mut env = CliEnv::default();
    env.set("HOME", home.to_string_lossy());
    env.set("CODEX_HOME", codex_home.to_string_lossy());
    env.set("MODELSIM_API_KEY", API_KEY);
    Ok(env)
}

/// OpenCode: XDG dirs inside `run_dir`, a pre-seeded plugin package (else it runs npm), and the
/// provider in `OPENCODE_CONFIG_CONTENT`. OpenCode has no switch for its retries, so
/// `settings.retries` is ignored (a `retry-after` header bounds them: see `NOTES.md`).
/// The child also needs `PWD` set to its working directory: OpenCode reads `$PWD`.
pub fn opencode(base_url: &str, run_dir: &Path, settings: &Settings) -> io::Result<CliEnv> {
    let home = home(run_dir)?;
    let xdg = |name: &str| -> io::Result<PathBuf> {
        let dir = run_dir.join("xdg").join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    };
    let config_home = xdg("config")?;
    let plugin_dir = config_home.join("opencode");
    std::fs::create_dir_all(plugin_dir.join("node_modules"))?;
    std::fs::write(
        plugin_dir.join("package.json"),
        r#"{"dependencies":{"@opencode-ai/plugin":"*"}}"#,
    )?;
    std::fs::write(
        plugin_dir.join("package-lock.json"),
        r#"{"name":"opencode","lockfileVersion":3,"requires":true,"packages":{"":{"dependencies":{"@opencode-ai/plugin":"*"}}}}"#,
    )?;
    let mut options = serde_json::json!({"baseURL": format!("{base_url}/v1"), "apiKey": API_KEY});
    if let Some(timeout) = settings.request_timeout {
        options["timeout"] = serde_json::json!(timeout.as_millis() as u64);
    }
    let config = serde_json::json!({
        "$schema": "https://opencode.ai/config.json",
        "provider": {"modelsim": {
            "npm": "@ai-sdk/openai-compatible",
            "name": "modelsim",
            "options": options,
            "models": {"scripted": {"name": "scripted", "tool_call": true,
                                    "cost": {"input": 1, "output": 2}}},
        }},
        "model": OPENCODE_MODEL,
        "small_model": OPENCODE_MODEL,
        "permission": {"edit": "allow", "bash": "allow"},
        "autoupdate": false,
        "share": "disabled",
    });
    let mut env = CliEnv::default();
    env.set("HOME", home.to_string_lossy());
    env.set("XDG_CONFIG_HOME", config_home.to_string_lossy());
    env.set("XDG_DATA_HOME", xdg("data")?.to_string_lossy());
    env.set("XDG_CACHE_HOME", xdg("cache")?.to_string_lossy());
    env.set("XDG_STATE_HOME", xdg("state")?.to_string_lossy());
    env.set("OPENCODE_CONFIG_CONTENT", config.to_string());
    for flag in [
        "OPENCODE_DISABLE_MODELS_FETCH",
        "OPENCODE_DISABLE_AUTOUPDATE",
        "OPENCODE_DISABLE_SHARE",
        "OPENCODE_DISABLE_LSP_DOWNLOAD",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS",
        "OPENCODE_DISABLE_CLAUDE_CODE",
    ] {
        env.set(flag, "1");
    }
    Ok(env)
}

/// Gemini CLI: `GOOGLE_GEMINI_BASE_URL`, `GEMINI_API_KEY` and a settings file in an isolated
/// `HOME` selecting API-key auth with telemetry and update checks off. `Retries::Disabled`
/// sets `general.maxAttempts = 1` for the main chat model; no request timeout is known.
pub fn gemini(base_url: &str, run_dir: &Path, settings: &Settings) -> io::Result<CliEnv> {
    let home = home(run_dir)?;
    let settings_dir = home.join(".gemini");
    std::fs::create_dir_all(&settings_dir)?;
    let mut general = serde_json::json!({"disableAutoUpdate": true, "disableUpdateNag": true});
    if settings.retries == Retries::Disabled {
        general["maxAttempts"] = serde_json::json!(1);
    }
    let settings = serde_json::json!({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "general": general,
        "privacy": {"usageStatisticsEnabled": false},
        "telemetry": {"enabled": false},
    });
    std::fs::write(settings_dir.join("settings.json"), settings.to_string())?;
    let mut env = CliEnv::default();
    env.set("HOME", home.to_string_lossy());
    env.set("GEMINI_API_KEY", API_KEY);
    env.set("GOOGLE_GEMINI_BASE_URL", base_url);
    env.set("GEMINI_CLI_NO_RELAUNCH", "true");
    Ok(env)
}
