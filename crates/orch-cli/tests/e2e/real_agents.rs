//! The real agent CLIs (Claude Code, Codex, OpenCode, Gemini CLI, installed from npm) run
//! through `orch serve` against the scripted model server on 127.0.0.1: the agent edits files
//! in the task's worktree, the bundle shows the edit and the parsed events, usage and the
//! session id are recorded, `orch task reply` resumes the session, and provider failures end
//! with the right status and message. OpenCode and Gemini CLI also run in their Agent Client
//! Protocol modes (`opencode acp`, `gemini --acp`) as `output = "acp"` command agents.
//!
//! A missing CLI fails the test when `CI` is set (`.ci/run` installs pinned versions) and is
//! skipped with a printed reason otherwise.

use std::path::Path;
use std::time::Duration;

use orch_modelsim::clienv::{self, CliEnv, Settings};
use orch_modelsim::{ModelServer, Script, Turn};
use serde_json::Value;

use crate::support::{read_json, read_text, workspace_of, Finished, Home, Repo, SERVE_DEADLINE};

/// Whether `cli` can run here; in CI its absence is a failure.
pub(crate) fn available(cli: &str) -> bool {
    let found = std::process::Command::new(cli)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{cli}` is not installed, and CI must run the real agent CLIs (.ci/run installs them)"
        );
        eprintln!("skipped: `{cli}` is not installed (npm install -g as .ci/run does to run this)");
    }
    found
}

/// A model server with its runtime, and the CLI's environment pointing at it.
pub(crate) struct Model {
    server: Option<ModelServer>,
    runtime: tokio::runtime::Runtime,
    pub(crate) env: CliEnv,
    _dir: tempfile::TempDir,
}

impl Model {
    pub(crate) fn start(cli: &str, script: Script, settings: Settings) -> Model {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(ModelServer::start(script)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let base = server.base_url();
        let env = match cli {
            "claude" => clienv::claude(&base, dir.path(), &settings),
            "codex" => clienv::codex(&base, dir.path(), &settings),
            "opencode" => clienv::opencode(&base, dir.path(), &settings),
            "gemini" => clienv::gemini(&base, dir.path(), &settings),
            other => panic!("no environment for {other}"),
        }
        .unwrap();
        Model {
            server: Some(server),
            runtime,
            env,
            _dir: dir,
        }
    }

    fn server(&self) -> &ModelServer {
        self.server.as_ref().unwrap()
    }

    /// The `.orch.toml` that lets `cli` run with this environment passed through by name.
    pub(crate) fn config(&self, cli: &str, extra: &str) -> String {
        let names: Vec<String> = self
            .env
            .vars
            .iter()
            .map(|(k, _)| format!("{k:?}"))
            .collect();
        // Claude and OpenCode run with orch's own per-task state directory (`isolate`), the
        // others with the one the environment names.
        let isolate = matches!(cli, "claude" | "opencode");
        format!(
            "[agents]\nenable_real_cli = true\nallowed = [\"{cli}\"]\n{extra}\n[agents.{cli}]\nisolate = {isolate}\npass_env = [{}]\n",
            names.join(", ")
        )
    }

    /// `orch serve` until the queue is empty, with the CLI's environment.
    fn serve(&self, home: &Home) -> Finished {
        let env: Vec<(&str, &str)> = self
            .env
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let finished = home
            .spawn_with_env(
                &[
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--workers",
                    "1",
                    "--lease",
                    "5s",
                    "--grace",
                    "1s",
                    "--exit-when-idle",
                ],
                &env,
            )
            .finish(SERVE_DEADLINE * 2);
        finished.expect_code(0, "orch serve --exit-when-idle");
        finished
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server.shutdown());
        }
    }
}

fn configure(repo: &Repo, toml: &str) {
    std::fs::write(repo.path().join(".orch.toml"), toml).unwrap();
    repo.git(&["add", ".orch.toml"]);
    repo.git(&["commit", "-qm", "orch config"]);
}

fn agent_task(cli: &str, prompt: &str, max_attempts: u32) -> String {
    format!(
        "tasks:\n  - id: t\n    title: real {cli}\n    retry: {{ max_attempts: {max_attempts}, backoff: 10ms, max_backoff: 10ms }}\n    steps:\n      - name: work\n        agent: {cli}\n        prompt: \"{prompt}\"\n"
    )
}

fn session_script() -> Script {
    Script::from_yaml(
        r#"
conversations:
  - match: "orch-e2e-reply"
    turns:
      - write: {path: second.txt, content: "second\n"}
      - say: {text: "Reply done"}
  - match: "orch-e2e-first"
    turns:
      - write: {path: hello.txt, content: "hello from the agent\n"}
      - run: {command: "echo ran > ran.txt"}
      - say: {text: "All done: hello.txt created"}
"#,
    )
    .unwrap()
}

/// The whole path for one CLI: a session that edits the worktree, the bundle, usage and the
/// session id, then a reply that resumes the session.
fn a_real_session_edits_the_worktree_and_a_reply_resumes_it(cli: &str) {
    if !available(cli) {
        return;
    }
    let model = Model::start(cli, session_script(), Settings::default());
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    configure(&repo, &model.config(cli, ""));
    let id = home.submit(
        "real",
        &agent_task(cli, "orch-e2e-first: create hello.txt and run a command", 2),
        repo.path(),
    )["t"];
    let served = model.serve(&home);

    let task = home.task(id);
    assert_eq!(
        task["task"]["status"], "done",
        "{cli}: {task:#}\n{}",
        served.stderr
    );
    let run = home.run_dir(id, 1);
    let workspace = workspace_of(&run);
    assert_eq!(
        std::fs::read_to_string(workspace.join("hello.txt")).unwrap(),
        "hello from the agent\n",
        "{cli}"
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("ran.txt")).unwrap(),
        "ran\n",
        "{cli}"
    );
    let patch = read_text(&run.join("patch.diff"));
    assert!(
        patch.contains("hello.txt") && patch.contains("+hello from the agent"),
        "{cli}: {patch}"
    );
    let events: Vec<Value> = read_text(&run.join("steps/work/events.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for kind in ["init", "tool_call", "tool_result", "usage", "result"] {
        assert!(kinds.contains(&kind), "{cli}: no {kind} event in {kinds:?}");
    }
    assert!(
        !read_text(&run.join("steps/work/stdout.log")).is_empty(),
        "{cli}"
    );
    let step = read_json(&run.join("steps/work/result.json"));
    assert_eq!(
        step["summary"], "All done: hello.txt created",
        "{cli}: {step:#}"
    );
    let usage = &task["usage"]["sessions"][0];
    let session = usage["session_id"].as_str().unwrap_or_default().to_owned();
    assert!(!session.is_empty(), "{cli}: {usage:#}");
    assert!(
        usage["input_tokens"].as_u64().unwrap() > 0,
        "{cli}: {usage:#}"
    );
    assert_eq!(usage["agent"], cli);

    // The follow-up resumes the same session in the same worktree.
    home.json(&[
        "task",
        "reply",
        &id.to_string(),
        "orch-e2e-reply: now add second.txt",
        "--json",
    ]);
    let served = model.serve(&home);
    let task = home.task(id);
    assert_eq!(
        task["task"]["status"], "done",
        "{cli}: {task:#}\n{}",
        served.stderr
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("second.txt")).unwrap(),
        "second\n",
        "{cli}"
    );
    assert!(
        workspace.join("hello.txt").is_file(),
        "{cli}: same worktree"
    );
    let resumed = model
        .server()
        .turn_requests()
        .into_iter()
        .filter(|r| r.body_text().contains("orch-e2e-reply"))
        .collect::<Vec<_>>();
    assert!(!resumed.is_empty(), "{cli}: the reply reached the model");
    assert!(
        resumed
            .iter()
            .all(|r| r.body_text().contains("orch-e2e-first")),
        "{cli}: the resumed session carries the earlier conversation"
    );
    let sessions = task["usage"]["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{cli}: {sessions:#?}");
    assert_eq!(sessions[1]["step"], "reply-1");
    home.run(&["doctor"]).expect_code(0, "orch doctor");
}

#[test]
fn claude_code_edits_the_worktree_and_a_reply_resumes_its_session() {
    a_real_session_edits_the_worktree_and_a_reply_resumes_it("claude");
}

#[test]
fn codex_edits_the_worktree_and_a_reply_resumes_its_session() {
    a_real_session_edits_the_worktree_and_a_reply_resumes_it("codex");
}

#[test]
fn opencode_edits_the_worktree_and_a_reply_resumes_its_session() {
    a_real_session_edits_the_worktree_and_a_reply_resumes_it("opencode");
}

#[test]
fn gemini_edits_the_worktree_and_a_reply_resumes_its_session() {
    a_real_session_edits_the_worktree_and_a_reply_resumes_it("gemini");
}

/// One Claude Code task whose model answers `turns`; returns the home, the task and its JSON.
fn claude_against(
    turns: &str,
    force: Option<Turn>,
    max_attempts: u32,
    extra: &str,
) -> Option<(Home, i64, Value, Model)> {
    if !available("claude") {
        return None;
    }
    let script = Script::from_yaml(&format!("conversations:\n  - turns: {turns}\n")).unwrap();
    let model = Model::start("claude", script, Settings::no_retries());
    if let Some(turn) = force {
        model.server().force_next(turn);
    }
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    configure(&repo, &model.config("claude", extra));
    let id = home.submit(
        "fail",
        &agent_task("claude", "orch-e2e-first: do it", max_attempts),
        repo.path(),
    )["t"];
    model.serve(&home);
    let task = home.task(id);
    Some((home, id, task, model))
}

fn step_result(home: &Home, id: i64, attempt: u32) -> Value {
    read_json(&home.run_dir(id, attempt).join("steps/work/result.json"))
}

#[test]
fn a_refused_api_key_fails_the_task_at_once_as_auth_refused() {
    let Some((home, id, task, _model)) = claude_against(
        "[{error: {status: 401, message: \"invalid x-api-key\"}}]",
        None,
        3,
        "",
    ) else {
        return;
    };
    assert_eq!(task["task"]["status"], "failed", "{task:#}");
    assert_eq!(task["runs"].as_array().unwrap().len(), 1, "not retried");
    let reason = task["task"]["status_reason"].as_str().unwrap();
    assert!(reason.contains("refused the credentials"), "{reason}");
    assert_eq!(step_result(&home, id, 1)["failure_class"], "auth_refused");
}

#[test]
fn a_rate_limit_is_retried_with_backoff_and_then_succeeds() {
    let Some((home, id, task, _model)) = claude_against(
        "[{say: {text: \"finally\"}}]",
        Some(Turn::Error {
            status: 429,
            retry_after_secs: None,
            message: Some("rate limited".into()),
        }),
        3,
        "",
    ) else {
        return;
    };
    assert_eq!(task["task"]["status"], "done", "{task:#}");
    assert_eq!(task["runs"].as_array().unwrap().len(), 2, "{task:#}");
    assert_eq!(step_result(&home, id, 1)["failure_class"], "rate_limited");
    assert_eq!(step_result(&home, id, 2)["summary"], "finally");
}

#[test]
fn a_provider_error_fails_the_run_as_model_error() {
    let Some((home, id, task, _model)) =
        claude_against("[{error: {status: 500, message: \"boom\"}}]", None, 1, "")
    else {
        return;
    };
    assert_eq!(task["task"]["status"], "failed", "{task:#}");
    let reason = task["task"]["status_reason"].as_str().unwrap();
    assert!(reason.contains("model provider failed"), "{reason}");
    assert_eq!(step_result(&home, id, 1)["failure_class"], "model_error");
}

#[test]
fn a_hung_model_is_caught_by_the_stall_watchdog() {
    let started = std::time::Instant::now();
    let Some((home, id, task, _model)) =
        claude_against("[hang]", None, 1, "stall_timeout = \"3s\"")
    else {
        return;
    };
    assert_eq!(task["task"]["status"], "failed", "{task:#}");
    let reason = task["task"]["status_reason"].as_str().unwrap();
    assert!(reason.contains("stalled"), "{reason}");
    assert_eq!(step_result(&home, id, 1)["failure_class"], "stalled");
    assert!(started.elapsed() < Duration::from_secs(60));
    let _ = Path::new("");
}

#[test]
fn the_hidden_model_server_command_serves_a_script_until_stopped() {
    let home = Home::new();
    let script = home.write(
        "script.yml",
        "conversations:\n  - turns:\n      - say: {text: \"hello from the script\"}\n",
    );
    let mut server = home.spawn(&[
        "model-server",
        "--script",
        script.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let base = server.wait_for_line("http://127.0.0.1:", Duration::from_secs(20));
    let base = base.trim().to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body: Value = runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("{base}/v1/chat/completions"))
            .json(&serde_json::json!({
                "model": "m",
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "hello from the script"
    );
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server
        .finish(Duration::from_secs(20))
        .expect_code(0, "orch model-server after SIGTERM");
    let bad = home.run(&["model-server", "--script", "/nonexistent/script.yml"]);
    assert_eq!(bad.code, Some(2));
    assert!(
        bad.stderr.contains("/nonexistent/script.yml"),
        "{}",
        bad.stderr
    );
}

/// The `.orch.toml` of an `acp` command agent `name` running `argv` with the model's environment.
fn acp_config(model: &Model, name: &str, argv: &[&str]) -> String {
    let names: Vec<String> = model
        .env
        .vars
        .iter()
        .map(|(k, _)| format!("{k:?}"))
        .collect();
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[agents]\nenable_real_cli = true\nallowed = [\"{name}\"]\n\n[agents.commands.{name}]\nargv = [{}]\noutput = \"acp\"\npass_env = [{}]\n",
        argv.join(", "),
        names.join(", ")
    )
}

/// Whether an ACP agent's `session/load` works (see the Gemini CLI test).
#[derive(PartialEq)]
enum Load {
    Works,
    /// FIXME: a known bug of the agent; the reply must then fail with orch's clear message.
    MayFail,
}

/// An Agent Client Protocol agent as a command agent (`output = "acp"`): the CLI's ACP mode,
/// driven over its stdin by orch, edits the worktree, its JSON-RPC updates become events, and a
/// reply resumes the session with `session/load`.
fn an_acp_agent_edits_the_worktree_and_a_reply_resumes_it(cli: &str, argv: &[&str], load: Load) {
    if !available(cli) {
        return;
    }
    let model = Model::start(cli, session_script(), Settings::default());
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let name = format!("{cli}-acp");
    configure(&repo, &acp_config(&model, &name, argv));
    let id = home.submit(
        "acp",
        &agent_task(
            &name,
            "orch-e2e-first: create hello.txt and run a command",
            1,
        ),
        repo.path(),
    )["t"];
    let served = model.serve(&home);

    let task = home.task(id);
    let run = home.run_dir(id, 1);
    let events_text = read_text(&run.join("steps/work/events.jsonl"));
    assert_eq!(
        task["task"]["status"], "done",
        "{name}: {task:#}\n{events_text}\n{}",
        served.stderr
    );
    let workspace = workspace_of(&run);
    assert_eq!(
        std::fs::read_to_string(workspace.join("hello.txt")).unwrap(),
        "hello from the agent\n",
        "{name}"
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("ran.txt")).unwrap(),
        "ran\n",
        "{name}"
    );
    let events: Vec<Value> = events_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for kind in [
        "init",
        "message",
        "tool_call",
        "tool_result",
        "usage",
        "result",
    ] {
        assert!(
            kinds.contains(&kind),
            "{name}: no {kind} event in\n{events_text}"
        );
    }
    // The raw output is the JSON-RPC the agent sent.
    let stdout = read_text(&run.join("steps/work/stdout.log"));
    assert!(stdout.contains("\"session/update\""), "{name}: {stdout}");
    let step = read_json(&run.join("steps/work/result.json"));
    assert_eq!(
        step["summary"], "All done: hello.txt created",
        "{name}: {step:#}"
    );
    let usage = &task["usage"]["sessions"][0];
    let session = usage["session_id"].as_str().unwrap_or_default().to_owned();
    assert!(!session.is_empty(), "{name}: {usage:#}");
    assert!(
        usage["input_tokens"].as_u64().unwrap() > 0,
        "{name}: {usage:#}"
    );
    assert_eq!(usage["agent"], name.as_str());

    home.json(&[
        "task",
        "reply",
        &id.to_string(),
        "orch-e2e-reply: now add second.txt",
        "--json",
    ]);
    let served = model.serve(&home);
    let task = home.task(id);
    if load == Load::MayFail && task["task"]["status"] == "failed" {
        let reason = task["task"]["status_reason"].as_str().unwrap();
        assert!(reason.contains("refused session/load"), "{name}: {reason}");
        eprintln!("{name}: the reply failed as the agent's known bug makes it: {reason}");
        return;
    }
    assert_eq!(
        task["task"]["status"], "done",
        "{name}: {task:#}\n{}",
        served.stderr
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("second.txt")).unwrap(),
        "second\n",
        "{name}"
    );
    let resumed: Vec<_> = model
        .server()
        .turn_requests()
        .into_iter()
        .filter(|r| r.body_text().contains("orch-e2e-reply"))
        .collect();
    assert!(
        !resumed.is_empty()
            && resumed
                .iter()
                .all(|r| r.body_text().contains("orch-e2e-first")),
        "{name}: the reply reached the model in the loaded session"
    );
    assert_eq!(task["usage"]["sessions"][1]["session_id"], session.as_str());
}

#[test]
fn opencode_acp_runs_as_an_acp_command_agent_and_a_reply_loads_its_session() {
    an_acp_agent_edits_the_worktree_and_a_reply_resumes_it(
        "opencode",
        &["opencode", "acp"],
        Load::Works,
    );
}

/// FIXME(gemini 0.61.0): `session/load` mostly answers "No previous sessions found for this
/// project." although the session's file is in the project's `chats` directory and
/// `gemini --list-sessions` run in the same worktree lists it; a standalone Python ACP client
/// gets the same answer, so the bug is Gemini CLI's. The first session is asserted in full; the
/// reply either resumes or fails with orch's clear `refused session/load` message.
#[test]
fn gemini_acp_runs_as_an_acp_command_agent_and_a_reply_loads_its_session() {
    an_acp_agent_edits_the_worktree_and_a_reply_resumes_it(
        "gemini",
        &["gemini", "--acp", "--skip-trust"],
        Load::MayFail,
    );
}

#[test]
fn a_real_router_agent_answering_from_the_scripted_model_routes_the_task() {
    if !available("claude") {
        return;
    }
    let script = Script::from_yaml(
        r#"
conversations:
  - match: "You are the router of orch"
    turns:
      - say: {text: "{\"agent\": \"sim\", \"complexity\": \"simple\", \"profile\": {\"role\": \"scribe\", \"skills\": [\"notes\"], \"tools\": [], \"constraints\": []}, \"reason\": \"a note is simple\"}"}
"#,
    )
    .unwrap();
    let model = Model::start("claude", script, Settings::no_retries());
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let config = format!(
        "{}\n[router]\nagent = \"claude\"\nagents = [\"sim\", \"codex\"]\n",
        model.config("claude", "")
    );
    configure(&repo, &config);
    let yaml = "tasks:\n  - id: t\n    title: write a note\n    steps:\n      - name: work\n        agent: auto\n        prompt: |\n          @write routed.txt\n          routed by a model\n          @end\n";
    let id = home.submit("route", yaml, repo.path())["t"];
    model.serve(&home);
    let task = home.task(id);
    assert_eq!(task["task"]["status"], "done", "{task:#}");
    let route = read_json(&home.run_dir(id, 1).join("route.json"));
    assert_eq!(route["agent"], "sim", "{route:#}");
    assert_eq!(route["complexity"], "simple", "{route:#}");
    let why = route.to_string();
    assert!(why.contains("a note is simple"), "{route:#}");
    let workspace = workspace_of(&home.run_dir(id, 1));
    assert_eq!(
        std::fs::read_to_string(workspace.join("routed.txt")).unwrap(),
        "routed by a model\n"
    );
    // The router's question reached the model through the real CLI.
    assert!(model
        .server()
        .turn_requests()
        .iter()
        .any(|r| r.body_text().contains("write a note")));
}

#[test]
fn opencode_acp_with_a_refused_api_key_fails_as_auth_refused() {
    if !available("opencode") {
        return;
    }
    let script = Script::from_yaml(
        "conversations:\n  - turns: [{error: {status: 401, message: \"invalid api key\"}}]\n",
    )
    .unwrap();
    let model = Model::start("opencode", script, Settings::no_retries());
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    configure(
        &repo,
        &acp_config(&model, "opencode-acp", &["opencode", "acp"]),
    );
    let id = home.submit(
        "acp-401",
        &agent_task("opencode-acp", "orch-e2e-first: do it", 3),
        repo.path(),
    )["t"];
    model.serve(&home);
    let task = home.task(id);
    assert_eq!(task["task"]["status"], "failed", "{task:#}");
    assert_eq!(task["runs"].as_array().unwrap().len(), 1, "not retried");
    let step = step_result(&home, id, 1);
    assert_eq!(step["failure_class"], "auth_refused", "{step:#}");
    // OpenCode answers the prompt with a JSON-RPC error carrying the provider's message.
    let error = step["error"].as_str().unwrap();
    assert!(error.contains("refused session/prompt"), "{error}");
}
