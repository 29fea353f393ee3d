//! Real agent CLIs: how each is invoked, and how its output becomes normalized events.
//!
//! Every CLI runs the same way ([`process`]): its own process group, `stdin` closed (except for
//! [`acp`] agents, which orch talks to over their stdin), a cleared
//! environment plus what the request and the agent's settings allow, stdout read line by line
//! through the agent's [`Dialect`] parser. Three timers watch it: the step's cancellation
//! (timeout, lease lost, shutdown), the stall watchdog (no output at all for `stall_timeout`),
//! and the result grace (the CLI printed its final result but does not exit). How the session
//! ended is decided in one place, [`transcript::Transcript::finish`], from the events, the exit
//! status and the end of stderr — so a rate limit reported with exit code 0 or an empty result
//! never counts as success.

pub mod acp;
mod claude;
mod codex;
mod command;
mod gemini;
mod opencode;
pub mod process;
pub mod transcript;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentSettings, CommandAgent, SessionMode};
use crate::pricing::Price;
use crate::{AgentError, AgentEvent, AgentOutcome, AgentRequest, AgentsConfig, OutputFormat};

pub use acp::AcpClient;
pub use claude::ClaudeParser;
pub use codex::CodexParser;
pub use command::{CommandParser, JsonlParser};
pub use gemini::GeminiParser;
pub use opencode::OpenCodeParser;

/// Variables every agent gets from orch's environment.
const BASE_ENV: [&str; 7] = ["PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER"];

/// Which CLI.
#[derive(Debug, Clone, PartialEq)]
pub enum CliKind {
    /// Claude Code (`claude -p --output-format stream-json`).
    Claude,
    /// Codex CLI (`codex exec --json`).
    Codex,
    /// OpenCode (`opencode run --format json`).
    OpenCode,
    /// Gemini CLI (`gemini -p --output-format stream-json`).
    Gemini,
    /// A user-defined command.
    Command(CommandAgent),
}

/// The usual program name of a built-in agent.
pub fn default_binary(name: &str) -> &'static str {
    match name {
        "claude" => "claude",
        "codex" => "codex",
        "opencode" => "opencode",
        "gemini" => "gemini",
        _ => "",
    }
}

/// One parser per CLI output format: a closed set, so a new format is a new variant.
#[derive(Debug)]
pub enum Dialect {
    /// Claude Code's stream-json.
    Claude(ClaudeParser),
    /// Codex's `exec --json`.
    Codex(CodexParser),
    /// OpenCode's `run --format json`.
    OpenCode(OpenCodeParser),
    /// Gemini CLI's stream-json.
    Gemini(GeminiParser),
    /// Plain text.
    Text(CommandParser),
    /// orch's own normalized JSONL.
    Jsonl(JsonlParser),
    /// The Agent Client Protocol: the only dialect that also talks back on stdin.
    Acp(AcpClient),
}

impl Dialect {
    /// The events one line of stdout stands for. Never fails: what cannot be read is kept as
    /// an `unknown` event.
    pub fn line(&mut self, line: &str) -> Vec<AgentEvent> {
        match self {
            Dialect::Claude(p) => p.line(line),
            Dialect::Codex(p) => p.line(line),
            Dialect::OpenCode(p) => p.line(line),
            Dialect::Gemini(p) => p.line(line),
            Dialect::Text(p) => p.line(line),
            Dialect::Jsonl(p) => p.line(line),
            Dialect::Acp(p) => p.line(line),
        }
    }

    /// Whether the agent reads orch's messages on stdin (all others get `/dev/null`).
    pub fn wants_stdin(&self) -> bool {
        matches!(self, Dialect::Acp(_))
    }

    /// Lines to write to the agent's stdin now.
    pub fn take_outgoing(&mut self) -> Vec<String> {
        match self {
            Dialect::Acp(p) => p.take_outgoing(),
            _ => Vec::new(),
        }
    }

    /// Whether orch has nothing more to say, so the agent's stdin can be closed.
    pub fn input_finished(&self) -> bool {
        match self {
            Dialect::Acp(p) => p.finished(),
            _ => true,
        }
    }

    /// Events owed at the end of the output (summaries of formats without a final line).
    pub fn finish(&mut self) -> Vec<AgentEvent> {
        match self {
            Dialect::Claude(_) | Dialect::Codex(_) | Dialect::Gemini(_) | Dialect::Jsonl(_) => {
                Vec::new()
            }
            Dialect::OpenCode(p) => p.finish(),
            Dialect::Text(p) => p.finish(),
            Dialect::Acp(p) => p.finish(),
        }
    }

    /// The dialect for `kind`, with the price table for CLIs that report no cost. `request`
    /// gives what a protocol dialect (ACP) sends itself: the prompt, directory and session.
    pub fn for_kind(
        kind: &CliKind,
        model: Option<&str>,
        pricing: &BTreeMap<String, Price>,
        request: &AgentRequest,
    ) -> Dialect {
        let price = model.and_then(|m| pricing.get(m)).copied();
        match kind {
            CliKind::Claude => Dialect::Claude(ClaudeParser::default()),
            CliKind::Codex => Dialect::Codex(CodexParser::new(price)),
            CliKind::OpenCode => Dialect::OpenCode(OpenCodeParser::default()),
            CliKind::Gemini => Dialect::Gemini(GeminiParser::new(price)),
            CliKind::Command(command) => match command.output {
                OutputFormat::Text => Dialect::Text(CommandParser::default()),
                OutputFormat::Jsonl => Dialect::Jsonl(JsonlParser::default()),
                OutputFormat::Acp => Dialect::Acp(
                    AcpClient::new(
                        &prompt_with_system(request),
                        &request.workdir.display().to_string(),
                        request.resume_session.as_deref(),
                    )
                    .priced(model, pricing),
                ),
            },
        }
    }
}

/// A process to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// argv, program first.
    pub argv: Vec<String>,
    /// The complete environment.
    pub env: BTreeMap<String, String>,
}

/// A real CLI agent with its settings.
#[derive(Debug, Clone)]
pub struct CliAgent {
    name: String,
    kind: CliKind,
    settings: AgentSettings,
    stall_timeout: Duration,
    result_grace: Duration,
    pricing: BTreeMap<String, Price>,
    session: SessionMode,
}

impl CliAgent {
    /// `sim` as a process (`orch agent-sim`, printing orch's normalized events), for live
    /// sessions: the same agent, watchable in a terminal.
    pub fn sim_process(config: &AgentsConfig) -> CliAgent {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "orch".to_owned());
        let command = CommandAgent {
            argv: vec![
                exe,
                "agent-sim".into(),
                "--workdir".into(),
                "{workdir}".into(),
                "--resume={session}".into(),
                "--".into(),
                "{prompt}".into(),
            ],
            output: OutputFormat::Jsonl,
            env: BTreeMap::new(),
            pass_env: Vec::new(),
            model: None,
            stall_timeout: None,
            session: Some(SessionMode::Tmux),
        };
        CliAgent::new("sim", CliKind::Command(command), config)
    }

    /// `sim` as a process started directly (no live session): how a confined run runs sim.
    pub fn sim_process_direct(config: &AgentsConfig) -> CliAgent {
        let mut agent = CliAgent::sim_process(config);
        if let CliKind::Command(command) = &mut agent.kind {
            command.session = Some(SessionMode::Direct);
        }
        agent.session = SessionMode::Direct;
        agent
    }

    /// This process is the `orch` binary (which has `agent-sim`), not a test binary.
    pub fn current_exe_is_orch() -> bool {
        std::env::current_exe().is_ok_and(|exe| exe.file_name().is_some_and(|name| name == "orch"))
    }

    /// The adapter for `kind` under `config`.
    pub fn new(name: &str, kind: CliKind, config: &AgentsConfig) -> CliAgent {
        let settings = config.settings(name).cloned().unwrap_or_default();
        let own_stall = match &kind {
            CliKind::Command(command) => command.stall_timeout,
            _ => settings.stall_timeout,
        };
        let own_session = match &kind {
            CliKind::Command(command) => command.session,
            _ => settings.session,
        };
        CliAgent {
            name: name.to_owned(),
            kind,
            settings,
            stall_timeout: own_stall.unwrap_or(config.stall_timeout),
            result_grace: config.result_grace,
            pricing: config.pricing.clone(),
            session: own_session.unwrap_or(config.session),
        }
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model a request runs with.
    fn model(&self, request: &AgentRequest) -> Option<String> {
        let configured = match &self.kind {
            CliKind::Command(command) => command.model.clone(),
            _ => self.settings.model.clone(),
        };
        request.model.clone().or(configured)
    }

    /// Build the command line and environment for `request`. `host` reads orch's own
    /// environment (for pass-through variables).
    pub fn invocation(
        &self,
        request: &AgentRequest,
        host: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Invocation, AgentError> {
        let model = self.model(request);
        let mut env = request.env.clone();
        let mut pass: Vec<String> = BASE_ENV.iter().map(|s| (*s).to_owned()).collect();
        let (fixed, extra_pass) = match &self.kind {
            CliKind::Command(command) => (command.env.clone(), command.pass_env.clone()),
            _ => (self.settings.env.clone(), self.settings.pass_env.clone()),
        };
        pass.extend(default_pass_env(&self.kind).iter().map(|s| (*s).to_owned()));
        pass.extend(extra_pass);
        for name in pass {
            if let Some(value) = host(&name) {
                env.entry(name).or_insert(value);
            }
        }
        let binary = self
            .settings
            .binary
            .clone()
            .unwrap_or_else(|| default_binary(&self.name).to_owned());
        let prompt = safe_prompt(&request.prompt);
        let with_system = |prompt: &str| match &request.system_prompt {
            Some(system) if !system.trim().is_empty() => format!("{system}\n\n{prompt}"),
            _ => prompt.to_owned(),
        };
        let state = match &request.state_dir {
            Some(dir) if self.settings.isolate => Some(dir.join(&self.name)),
            _ => None,
        };
        let max_turns = request.max_turns.or(self.settings.max_turns);
        let allowed: Vec<String> = if request.allowed_tools.is_empty() {
            self.settings.allowed_tools.clone()
        } else {
            request.allowed_tools.clone()
        };
        let mut disallowed = self.settings.disallowed_tools.clone();
        disallowed.extend(request.disallowed_tools.iter().cloned());

        let mut argv = vec![binary];
        match &self.kind {
            CliKind::Claude => {
                argv.extend(
                    [
                        "-p",
                        prompt.as_str(),
                        "--output-format",
                        "stream-json",
                        "--verbose",
                    ]
                    .map(String::from),
                );
                push_opt(&mut argv, "--model", model.as_deref());
                push_opt(
                    &mut argv,
                    "--max-turns",
                    max_turns.map(|n| n.to_string()).as_deref(),
                );
                push_opt(
                    &mut argv,
                    "--append-system-prompt",
                    request
                        .system_prompt
                        .as_deref()
                        .filter(|s| !s.trim().is_empty()),
                );
                push_opt(&mut argv, "--resume", request.resume_session.as_deref());
                // Headless: nobody can approve a tool, so edits are accepted and the usual
                // tools are allowed. `bypassPermissions` is refused as root.
                argv.extend(["--permission-mode", "acceptEdits"].map(String::from));
                let allowed = if allowed.is_empty() {
                    ["Bash", "Edit", "Write", "MultiEdit", "Read", "Glob", "Grep"]
                        .map(String::from)
                        .to_vec()
                } else {
                    allowed
                };
                argv.push("--allowedTools".into());
                argv.push(allowed.join(","));
                if !disallowed.is_empty() {
                    argv.push("--disallowedTools".into());
                    argv.push(disallowed.join(","));
                }
                argv.extend(self.settings.args.iter().cloned());
                for (k, v) in [
                    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
                    ("DISABLE_AUTOUPDATER", "1"),
                    ("DISABLE_TELEMETRY", "1"),
                    ("DISABLE_ERROR_REPORTING", "1"),
                ] {
                    env.insert(k.into(), v.into());
                }
                if let Some(state) = &state {
                    create_dir(state)?;
                    env.insert("CLAUDE_CONFIG_DIR".into(), state.display().to_string());
                }
            }
            CliKind::Codex => {
                argv.extend(
                    [
                        "exec",
                        "--json",
                        "--skip-git-repo-check",
                        "--dangerously-bypass-approvals-and-sandbox",
                        "-C",
                    ]
                    .map(String::from),
                );
                argv.push(request.workdir.display().to_string());
                push_opt(&mut argv, "--model", model.as_deref());
                argv.extend(self.settings.args.iter().cloned());
                if let Some(state) = &state {
                    create_dir(state)?;
                    seed_codex_home(state)?;
                    env.insert("CODEX_HOME".into(), state.display().to_string());
                }
                if let Some(session) = &request.resume_session {
                    argv.push("resume".into());
                    argv.push(session.clone());
                }
                argv.push(with_system(&prompt));
            }
            CliKind::OpenCode => {
                argv.extend(["run", "--format", "json"].map(String::from));
                push_opt(&mut argv, "--model", model.as_deref());
                push_opt(&mut argv, "--session", request.resume_session.as_deref());
                argv.extend(self.settings.args.iter().cloned());
                for (k, v) in [
                    ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
                    ("OPENCODE_DISABLE_SHARE", "1"),
                ] {
                    env.insert(k.into(), v.into());
                }
                if let Some(state) = &state {
                    seed_opencode_home(state)?;
                    for (k, sub) in [
                        ("HOME", ""),
                        ("XDG_CONFIG_HOME", "config"),
                        ("XDG_DATA_HOME", "data"),
                        ("XDG_CACHE_HOME", "cache"),
                        ("XDG_STATE_HOME", "state"),
                    ] {
                        env.insert(k.into(), state.join(sub).display().to_string());
                    }
                    for k in [
                        "OPENCODE_DISABLE_MODELS_FETCH",
                        "OPENCODE_DISABLE_LSP_DOWNLOAD",
                        "OPENCODE_DISABLE_DEFAULT_PLUGINS",
                        "OPENCODE_DISABLE_CLAUDE_CODE",
                    ] {
                        env.insert(k.into(), "1".into());
                    }
                }
                argv.push(with_system(&prompt));
            }
            CliKind::Gemini => {
                argv.extend(
                    [
                        "-p",
                        prompt.as_str(),
                        "--output-format",
                        "stream-json",
                        // Headless: nobody can answer the approval or folder-trust prompts.
                        "--yolo",
                        "--skip-trust",
                    ]
                    .map(String::from),
                );
                push_opt(&mut argv, "--model", model.as_deref());
                push_opt(&mut argv, "--resume", request.resume_session.as_deref());
                argv.extend(self.settings.args.iter().cloned());
                if let Some(state) = &state {
                    create_dir(state)?;
                    env.insert("HOME".into(), state.display().to_string());
                }
                if let Some(system) = request
                    .system_prompt
                    .as_deref()
                    .filter(|s| !s.trim().is_empty())
                {
                    // Gemini CLI has no flag to append to its system prompt: the profile leads
                    // the prompt instead.
                    let at = argv.iter().position(|a| a == "-p").map_or(1, |i| i + 1);
                    argv[at] = format!("{system}\n\n{prompt}");
                }
            }
            CliKind::Command(command) => {
                argv.clear();
                let workdir = request.workdir.display().to_string();
                for arg in &command.argv {
                    if arg == "{session}" && request.resume_session.is_none() {
                        continue;
                    }
                    argv.push(
                        arg.replace("{prompt}", &with_system(&request.prompt))
                            .replace("{model}", model.as_deref().unwrap_or(""))
                            .replace("{workdir}", &workdir)
                            .replace("{session}", request.resume_session.as_deref().unwrap_or("")),
                    );
                }
                if argv.is_empty() {
                    return Err(AgentError::Unavailable {
                        agent: self.name.clone(),
                        reason: "its `argv` is empty; give the program and its arguments".into(),
                    });
                }
            }
        }
        // Some CLIs (OpenCode) take their working directory from `$PWD`, not the process's.
        env.insert("PWD".into(), request.workdir.display().to_string());
        env.extend(fixed);
        Ok(Invocation { argv, env })
    }

    /// Run one session.
    pub async fn run(
        &self,
        request: &AgentRequest,
        events: mpsc::UnboundedSender<AgentEvent>,
        cancel: CancellationToken,
    ) -> Result<AgentOutcome, AgentError> {
        let invocation = self.invocation(request, &|name| std::env::var(name).ok())?;
        let model = self.model(request);
        let dialect = Dialect::for_kind(&self.kind, model.as_deref(), &self.pricing, request);
        let limits = process::Limits {
            stall_timeout: self.stall_timeout,
            result_grace: self.result_grace,
        };
        let relay = std::env::current_exe().ok();
        let live = match (&request.live_session, &relay, self.session) {
            (Some(session), Some(relay), SessionMode::Tmux) => Some((session, relay.as_path())),
            _ => None,
        };
        process::run(
            &self.name,
            invocation,
            &request.workdir,
            dialect,
            limits,
            request,
            live,
            events,
            cancel,
        )
        .await
    }
}

/// The prompt with the rendered profile leading it, for agents with no system prompt option.
fn prompt_with_system(request: &AgentRequest) -> String {
    match &request.system_prompt {
        Some(system) if !system.trim().is_empty() => format!("{system}\n\n{}", request.prompt),
        _ => request.prompt.clone(),
    }
}

/// Variables each CLI needs from orch's environment (credentials and endpoints).
fn default_pass_env(kind: &CliKind) -> &'static [&'static str] {
    match kind {
        CliKind::Claude => &[
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "ANTHROPIC_BASE_URL",
            "CLAUDE_CONFIG_DIR",
        ],
        CliKind::Codex => &["OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_HOME"],
        CliKind::OpenCode => &[
            "OPENCODE_CONFIG",
            "OPENCODE_CONFIG_CONTENT",
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
        ],
        CliKind::Gemini => &[
            "GEMINI_API_KEY",
            "GOOGLE_API_KEY",
            "GOOGLE_GEMINI_BASE_URL",
            "GOOGLE_CLOUD_PROJECT",
        ],
        CliKind::Command(_) => &[],
    }
}

fn push_opt(argv: &mut Vec<String>, flag: &str, value: Option<&str>) {
    if let Some(value) = value {
        argv.push(flag.to_owned());
        argv.push(value.to_owned());
    }
}

/// A prompt that starts with `-` would be read as a flag: a leading space keeps it a prompt.
fn safe_prompt(prompt: &str) -> String {
    if prompt.starts_with('-') {
        format!(" {prompt}")
    } else {
        prompt.to_owned()
    }
}

fn create_dir(dir: &Path) -> Result<(), AgentError> {
    std::fs::create_dir_all(dir).map_err(|source| AgentError::Io {
        context: format!("create the agent state directory {}", dir.display()),
        source,
    })
}

fn write_if_missing(path: &Path, content: &str) -> Result<(), AgentError> {
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_dir(parent)?;
    }
    std::fs::write(path, content).map_err(|source| AgentError::Io {
        context: format!("write {}", path.display()),
        source,
    })
}

/// A fresh `CODEX_HOME` gets settings that keep Codex from calling home; the provider comes
/// from the agent's `args` (`-c model_provider=...`) or a `config.toml` the user puts there.
fn seed_codex_home(dir: &Path) -> Result<(), AgentError> {
    write_if_missing(
        &dir.join("config.toml"),
        "check_for_update_on_startup = false\n\n[analytics]\nenabled = false\n\n[features]\nplugins = false\nremote_plugin = false\napps = false\n",
    )
}

/// OpenCode installs a plugin package from npm on every run unless its config directory
/// already holds one; a fresh isolated home gets an empty, complete package.
fn seed_opencode_home(dir: &Path) -> Result<(), AgentError> {
    let config = dir.join("config").join("opencode");
    create_dir(&config.join("node_modules"))?;
    write_if_missing(
        &config.join("package.json"),
        "{\"dependencies\":{\"@opencode-ai/plugin\":\"*\"}}\n",
    )?;
    write_if_missing(
        &config.join("package-lock.json"),
        "{\"name\":\"opencode\",\"lockfileVersion\":3,\"requires\":true,\"packages\":{\"\":{\"dependencies\":{\"@opencode-ai/plugin\":\"*\"}}}}\n",
    )?;
    for sub in ["data", "cache", "state"] {
        create_dir(&dir.join(sub))?;
    }
    Ok(())
}

/// A line as JSON, if it is a JSON object.
fn parse_json(line: &str) -> Option<serde_json::Value> {
    let trimmed = line.trim();
    if !trimmed.starts_with('{') {
        return None;
    }
    serde_json::from_str(trimmed).ok()
}

/// A line that is not JSON (a warning the CLI printed, or a line cut short): kept, never fatal.
fn unparsed(line: &str) -> Vec<AgentEvent> {
    if line.trim().is_empty() {
        return Vec::new();
    }
    vec![AgentEvent::Unknown {
        raw: serde_json::json!({ "unparsed": line }),
    }]
}

fn str_at<'a>(value: &'a serde_json::Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(serde_json::Value::as_str)
}

fn u64_at(value: &serde_json::Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, config: &AgentsConfig) -> CliAgent {
        match crate::Agent::resolve(name, config).unwrap() {
            crate::Agent::Cli(cli) => *cli,
            crate::Agent::Sim(_) => panic!("sim"),
        }
    }

    fn enabled() -> AgentsConfig {
        AgentsConfig {
            enable_real_cli: true,
            ..AgentsConfig::default()
        }
    }

    fn request() -> AgentRequest {
        AgentRequest {
            prompt: "add a test".into(),
            workdir: "/work/tree".into(),
            ..AgentRequest::default()
        }
    }

    #[test]
    fn claude_gets_headless_flags_model_profile_and_resume() {
        let mut config = enabled();
        config.claude.model = Some("sonnet".into());
        let mut req = request();
        req.system_prompt = Some("You are a tester.".into());
        req.resume_session = Some("abc".into());
        req.max_turns = Some(7);
        let inv = agent("claude", &config)
            .invocation(&req, &|name| {
                (name == "ANTHROPIC_API_KEY").then(|| "k".into())
            })
            .unwrap();
        let line = inv.argv.join(" ");
        assert!(line.starts_with("claude -p add a test --output-format stream-json --verbose --model sonnet --max-turns 7 --append-system-prompt You are a tester. --resume abc"), "{line}");
        assert_eq!(
            inv.env.get("ANTHROPIC_API_KEY").map(String::as_str),
            Some("k")
        );
        assert!(!inv.env.contains_key("OPENAI_API_KEY"));
    }

    #[test]
    fn codex_resume_goes_before_the_prompt() {
        let mut req = request();
        req.resume_session = Some("thread-1".into());
        let inv = agent("codex", &enabled())
            .invocation(&req, &|_| None)
            .unwrap();
        let n = inv.argv.len();
        assert_eq!(&inv.argv[n - 3..], ["resume", "thread-1", "add a test"]);
        assert!(inv.argv.contains(&"--json".to_owned()));
    }

    #[test]
    fn command_templates_fill_placeholders() {
        let mut config = enabled();
        config.commands.insert(
            "echoer".into(),
            toml::from_str("argv = [\"tool\", \"--model={model}\", \"{prompt}\", \"{session}\", \"--in\", \"{workdir}\"]\nmodel = \"m1\"\n").unwrap(),
        );
        let inv = agent("echoer", &config)
            .invocation(&request(), &|_| None)
            .unwrap();
        assert_eq!(
            inv.argv,
            ["tool", "--model=m1", "add a test", "--in", "/work/tree"]
        );
    }

    #[test]
    fn a_prompt_that_looks_like_a_flag_stays_a_prompt() {
        let mut req = request();
        req.prompt = "--help me".into();
        let inv = agent("claude", &enabled())
            .invocation(&req, &|_| None)
            .unwrap();
        assert_eq!(inv.argv[2], " --help me");
    }
}
