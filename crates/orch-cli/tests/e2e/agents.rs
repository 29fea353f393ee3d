//! Agents end to end through `orch serve`: claim-time preflight, failure classes from a CLI's
//! own output, rate limits that wait for their reset, usage accounting, and follow-up replies
//! that resume the agent's session. Stand-in CLIs are small shell scripts (their behaviours are
//! the point here); the real CLIs against the scripted model server are in `real_agents.rs`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{read_json, read_text, task_events, workspace_of, Home, Repo};

/// An executable script in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    // `--version` is what preflight asks first; answer it like the real CLI.
    std::fs::write(
        &path,
        format!("#!/bin/sh\nif [ \"$1\" = --version ]; then echo '2.1.197 (Claude Code)'; exit 0; fi\n{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn write_config(repo: &Repo, toml: &str) {
    std::fs::write(repo.path().join(".orch.toml"), toml).unwrap();
    repo.git(&["add", ".orch.toml"]);
    repo.git(&["commit", "-qm", "orch config"]);
}

fn one_task(agent: &str, prompt: &str, max_attempts: u32) -> String {
    let prompt: String = prompt.lines().map(|l| format!("          {l}\n")).collect();
    format!(
        "tasks:\n  - id: t\n    title: agent task\n    retry: {{ max_attempts: {max_attempts}, backoff: 10ms, max_backoff: 10ms }}\n    steps:\n      - name: work\n        agent: {agent}\n        prompt: |\n{prompt}"
    )
}

#[test]
fn a_real_agent_that_config_does_not_enable_fails_at_claim_time_with_what_to_do() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let id = home.submit("off", &one_task("claude", "say hi", 3), repo.path())["t"];
    home.serve_until_idle(1);
    let task = home.task(id);
    assert_eq!(task["task"]["status"], "failed", "{task:#}");
    let reason = task["task"]["status_reason"].as_str().unwrap();
    assert!(reason.contains("enable_real_cli"), "{reason}");
    // Refused before anything ran: one run, no worktree, a permanent failure.
    assert_eq!(task["runs"].as_array().unwrap().len(), 1);
    let log = read_text(&home.run_dir(id, 1).join("logs.txt"));
    assert!(!log.contains("workspace"), "{log}");
    assert!(!home.path().join("worktrees").exists());
}

#[test]
fn a_missing_cli_fails_at_claim_time_and_is_not_retried() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    write_config(
        &repo,
        "[agents]\nenable_real_cli = true\n[agents.codex]\nbinary = \"/nonexistent/bin/codex\"\n",
    );
    let id = home.submit("missing", &one_task("codex", "say hi", 3), repo.path())["t"];
    home.serve_until_idle(1);
    let task = home.task(id);
    assert_eq!(task["task"]["status"], "failed", "{task:#}");
    let reason = task["task"]["status_reason"].as_str().unwrap();
    assert!(reason.contains("not installed"), "{reason}");
    assert_eq!(task["runs"].as_array().unwrap().len(), 1, "not retried");
    let result = read_json(&home.run_dir(id, 1).join("result.json"));
    assert_eq!(result["status"], "failed");
}

#[test]
fn a_too_old_cli_is_refused_with_both_versions() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let bin = tempfile::tempdir().unwrap();
    let cli = bin.path().join("old-claude");
    std::fs::write(&cli, "#!/bin/sh\necho '1.0.3 (Claude Code)'\n").unwrap();
    std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
    write_config(
        &repo,
        &format!(
            "[agents]\nenable_real_cli = true\nmin_versions = {{ claude = \"2.1.0\" }}\n[agents.claude]\nbinary = \"{}\"\n",
            cli.display()
        ),
    );
    let id = home.submit("old", &one_task("claude", "say hi", 2), repo.path())["t"];
    home.serve_until_idle(1);
    let task = home.task(id);
    let reason = task["task"]["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("1.0.3") && reason.contains("2.1.0"),
        "{reason}"
    );
    let finished = home.run(&[
        "agents",
        "--project",
        repo.path().to_str().unwrap(),
        "--json",
    ]);
    // An enabled agent that cannot run makes `orch agents` exit 1.
    finished.expect_code(1, "orch agents with a too-old claude");
    let listed = finished.json();
    let claude = listed["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "claude")
        .unwrap()
        .clone();
    assert_eq!(claude["ready"], false, "{claude:#}");
    assert_eq!(claude["version"], "1.0.3");
}

/// A stand-in `claude` that prints a stream-json session; `result` is the final line's JSON.
fn claude_session(result: &str) -> String {
    format!(
        "echo '{{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"sess-42\",\"model\":\"claude-test\"}}'\n\
         echo 'edited' > edited.txt\n\
         echo '{{\"type\":\"assistant\",\"message\":{{\"content\":[{{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"Write\",\"input\":{{\"file_path\":\"edited.txt\",\"content\":\"edited\"}}}}]}}}}'\n\
         echo '{result}'"
    )
}

#[test]
fn an_auth_refusal_fails_for_good_and_says_so() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let bin = tempfile::tempdir().unwrap();
    let cli = script(
        bin.path(),
        "claude",
        &format!(
            "{}\nexit 1",
            claude_session(
                r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":401,"result":"Invalid API key · Please run /login","session_id":"sess-42"}"#
            )
        ),
    );
    write_config(
        &repo,
        &format!(
            "[agents]\nenable_real_cli = true\n[agents.claude]\nbinary = \"{}\"\n",
            cli.display()
        ),
    );
    let id = home.submit("auth", &one_task("claude", "say hi", 3), repo.path())["t"];
    home.serve_until_idle(1);
    let task = home.task(id);
    assert_eq!(task["task"]["status"], "failed", "{task:#}");
    assert_eq!(
        task["runs"].as_array().unwrap().len(),
        1,
        "auth errors are not retried"
    );
    let reason = task["task"]["status_reason"].as_str().unwrap();
    assert!(reason.contains("refused the credentials"), "{reason}");
    let step = read_json(&home.run_dir(id, 1).join("steps/work/result.json"));
    assert_eq!(step["failure_class"], "auth_refused", "{step:#}");
    // The CLI's own lines are kept raw, and parsed into events.
    let stdout = read_text(&home.run_dir(id, 1).join("steps/work/stdout.log"));
    assert!(stdout.contains("\"api_error_status\":401"), "{stdout}");
    let events = read_text(&home.run_dir(id, 1).join("steps/work/events.jsonl"));
    assert!(events.contains("\"type\":\"tool_call\""), "{events}");
}

#[test]
fn a_rate_limit_with_a_reset_time_waits_for_it_without_using_an_attempt() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let bin = tempfile::tempdir().unwrap();
    // The fake CLI counts its calls in the task's own HOME (its scratch area, kept across
    // attempts): inside the sandbox it can write nowhere else outside the worktree.
    let calls = "\"$HOME/calls\"";
    // First call: limited until two seconds from now, reported with exit code 0. Then success.
    let limited = r#"{"type":"result","subtype":"success","is_error":false,"result":"Claude AI usage limit reached|RESET","session_id":"sess-42"}"#;
    let ok = r#"{"type":"result","subtype":"success","is_error":false,"result":"all done","session_id":"sess-42","total_cost_usd":0.5,"usage":{"input_tokens":100,"output_tokens":20}}"#;
    let body = format!(
        "echo call >> {calls}\nif [ \"$(wc -l < {calls})\" -eq 1 ]; then\n  RESET=$(( $(date +%s) + 2 ))\n  {}\nelse\n  {}\nfi",
        claude_session(limited).replace("|RESET", "|'$RESET'"),
        claude_session(ok),
        calls = calls
    );
    let cli = script(bin.path(), "claude", &body);
    write_config(
        &repo,
        &format!(
            "[agents]\nenable_real_cli = true\n[agents.claude]\nbinary = \"{}\"\n",
            cli.display()
        ),
    );
    // One attempt only: the rate-limited run must not use it.
    let id = home.submit("limit", &one_task("claude", "say hi", 1), repo.path())["t"];
    home.serve_until_idle(1);
    let task = home.task(id);
    assert_eq!(task["task"]["status"], "done", "{task:#}");
    assert_eq!(task["runs"].as_array().unwrap().len(), 2, "{task:#}");
    let requeue = task_events(&task, "requeue");
    assert_eq!(requeue.len(), 1, "{task:#}");
    assert!(
        requeue[0]["reason"]
            .as_str()
            .unwrap()
            .contains("rate limited"),
        "{task:#}"
    );
    // It waited for the reset (about two seconds) rather than retrying at once.
    let first = read_json(&home.run_dir(id, 1).join("result.json"));
    let second = read_json(&home.run_dir(id, 2).join("result.json"));
    let ended = humantime::parse_rfc3339(first["ended_at"].as_str().unwrap()).unwrap();
    let started = humantime::parse_rfc3339(second["started_at"].as_str().unwrap()).unwrap();
    assert!(started.duration_since(ended).unwrap() >= std::time::Duration::from_millis(900));
    assert_eq!(first["failure_class"], "rate_limited", "{first:#}");
}

#[test]
fn usage_is_recorded_per_session_and_summed_per_task_agent_and_day() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let bin = tempfile::tempdir().unwrap();
    let ok = r#"{"type":"result","subtype":"success","is_error":false,"result":"all done","session_id":"sess-42","total_cost_usd":0.125,"usage":{"input_tokens":1000,"output_tokens":200}}"#;
    let cli = script(bin.path(), "claude", &claude_session(ok));
    write_config(
        &repo,
        &format!(
            "[agents]\nenable_real_cli = true\n[agents.claude]\nbinary = \"{}\"\n",
            cli.display()
        ),
    );
    let yaml = "tasks:\n  - id: a\n    title: real\n    steps:\n      - { name: one, agent: claude, prompt: go }\n      - { name: two, agent: sim, prompt: add notes }\n  - id: b\n    title: again\n    steps:\n      - { name: one, agent: claude, prompt: go }\n";
    let ids = home.submit("usage", yaml, repo.path());
    home.serve_until_idle(2);
    let task = home.task(ids["a"]);
    assert_eq!(task["task"]["status"], "done", "{task:#}");
    let sessions = task["usage"]["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{task:#}");
    let claude = sessions.iter().find(|s| s["agent"] == "claude").unwrap();
    assert_eq!(claude["session_id"], "sess-42");
    assert_eq!(claude["input_tokens"], 1000);
    assert_eq!(claude["model"], "claude-test");
    assert!((task["usage"]["total"]["cost_usd"].as_f64().unwrap() - 0.125).abs() < 1e-9);

    let status = home.json(&["status", "--json"]);
    let by_agent = status["usage"]["by_agent"].as_array().unwrap();
    let claude = by_agent.iter().find(|a| a["key"] == "claude").unwrap();
    assert_eq!(claude["sessions"], 2);
    assert_eq!(claude["input_tokens"], 2000);
    assert!((claude["cost_usd"].as_f64().unwrap() - 0.25).abs() < 1e-9);
    assert!(by_agent.iter().any(|a| a["key"] == "sim"));
    let by_day = status["usage"]["by_day"].as_array().unwrap();
    assert_eq!(by_day.len(), 1);
    assert_eq!(by_day[0]["sessions"], 3);
    let text = home.run(&["task", "get", &ids["a"].to_string()]);
    text.expect_code(0, "task get");
    assert!(
        text.stdout.contains("usage:") && text.stdout.contains("sess-42"),
        "{}",
        text.stdout
    );
}

#[test]
fn a_reply_resumes_the_agent_session_in_the_same_worktree() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let prompt = "@write first.txt\none\n@end";
    let id = home.submit("reply", &one_task("sim", prompt, 2), repo.path())["t"];
    home.serve_until_idle(1);
    let first = home.task(id);
    assert_eq!(first["task"]["status"], "done");
    let session = first["usage"]["sessions"][0]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let replied = home.json(&[
        "task",
        "reply",
        &id.to_string(),
        "@write second.txt\ntwo\n@end",
        "--json",
    ]);
    assert_eq!(replied["status"], "queued");
    home.serve_until_idle(1);

    let task = home.task(id);
    assert_eq!(task["task"]["status"], "done", "{task:#}");
    assert_eq!(task_events(&task, "reply").len(), 1);
    assert_eq!(task_events(&task, "complete").len(), 2);
    let run = home.run_dir(id, 2);
    let events = read_text(&run.join("steps/reply-1/events.jsonl"));
    let init: serde_json::Value = serde_json::from_str(events.lines().next().unwrap()).unwrap();
    assert_eq!(
        init["session_id"],
        session.as_str(),
        "the same session resumes"
    );
    assert!(events.contains("Resuming session"), "{events}");
    // Same worktree: the first run's file is still there beside the reply's.
    let workspace = workspace_of(&run);
    assert_eq!(
        std::fs::read_to_string(workspace.join("first.txt")).unwrap(),
        "one\n"
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("second.txt")).unwrap(),
        "two\n"
    );
    // Two completions, one per run, and the events still replay (`reply` reopens the task).
    home.run(&["doctor"])
        .expect_code(0, "orch doctor after a reply");

    // A reply needs a finished task with a recorded session.
    let refused = home.run(&["task", "reply", "999", "more"]);
    assert_ne!(refused.code, Some(0));
}

#[test]
fn a_cli_that_hangs_after_its_result_is_ended_and_the_run_succeeds() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let bin = tempfile::tempdir().unwrap();
    let ok = r#"{"type":"result","subtype":"success","is_error":false,"result":"done, then stuck","session_id":"sess-42"}"#;
    let cli = script(
        bin.path(),
        "claude",
        &format!("{}\nexec sleep 600", claude_session(ok)),
    );
    write_config(
        &repo,
        &format!("[agents]\nenable_real_cli = true\nresult_grace = \"1s\"\n[agents.claude]\nbinary = \"{}\"\n", cli.display()),
    );
    let id = home.submit("stuck", &one_task("claude", "say hi", 1), repo.path())["t"];
    home.serve_until_idle(1);
    let task = home.task(id);
    assert_eq!(task["task"]["status"], "done", "{task:#}");
    let step = read_json(&home.run_dir(id, 1).join("steps/work/result.json"));
    assert_eq!(step["summary"], "done, then stuck");
}

#[test]
fn an_agent_step_past_its_timeout_is_classified_timeout() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let yaml = "tasks:\n  - id: t\n    title: slow agent\n    steps:\n      - name: work\n        agent: sim\n        timeout: 1s\n        prompt: |\n          @sleep 30000\n";
    let id = home.submit("slow", yaml, repo.path())["t"];
    home.serve_until_idle(1);
    let task = home.task(id);
    assert_eq!(task["task"]["status"], "needs_review", "{task:#}");
    let step = read_json(&home.run_dir(id, 1).join("steps/work/result.json"));
    assert_eq!(step["failure_class"], "timeout", "{step:#}");
}

#[test]
fn command_agents_run_any_program_with_text_or_jsonl_output() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let bin = tempfile::tempdir().unwrap();
    // Plain text: every line is a message, all of stdout the result.
    let texty = script(
        bin.path(),
        "texty",
        "echo \"model=$1\"\necho \"$2\" > prompt.txt\necho \"wrote prompt.txt in $(basename \"$3\")\"",
    );
    // orch's own event lines.
    let jsonl = script(
        bin.path(),
        "jsonl-agent",
        r#"echo '{"type":"init","session_id":"j-1","model":"tiny"}'
echo 'not json at all'
echo made > made.txt
echo '{"type":"tool_call","id":"1","name":"write","input":{"path":"made.txt"}}'
echo '{"type":"usage","input_tokens":7,"output_tokens":3,"cost_usd":0.01}'
echo '{"type":"result","text":"made it","is_error":false}'"#,
    );
    write_config(
        &repo,
        &format!(
            "[agents]\nenable_real_cli = true\n[agents.commands.texty]\nargv = [\"{}\", \"{{model}}\", \"{{prompt}}\", \"{{workdir}}\"]\nmodel = \"m-1\"\n[agents.commands.jsonl]\nargv = [\"{}\"]\noutput = \"jsonl\"\n",
            texty.display(),
            jsonl.display()
        ),
    );
    let yaml = "tasks:\n  - id: text\n    title: text agent\n    steps:\n      - { name: work, agent: texty, prompt: hello there }\n  - id: jsonl\n    title: jsonl agent\n    steps:\n      - { name: work, agent: jsonl, prompt: go }\n";
    let ids = home.submit("commands", yaml, repo.path());
    home.serve_until_idle(2);

    let text = home.task(ids["text"]);
    assert_eq!(text["task"]["status"], "done", "{text:#}");
    let run = home.run_dir(ids["text"], 1);
    let step = read_json(&run.join("steps/work/result.json"));
    let summary = step["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("model=m-1\nwrote prompt.txt in "),
        "{summary}"
    );
    let workspace = workspace_of(&run);
    assert!(std::fs::read_to_string(workspace.join("prompt.txt"))
        .unwrap()
        .starts_with("hello there"));

    let jsonl = home.task(ids["jsonl"]);
    assert_eq!(jsonl["task"]["status"], "done", "{jsonl:#}");
    let run = home.run_dir(ids["jsonl"], 1);
    assert_eq!(
        read_json(&run.join("steps/work/result.json"))["summary"],
        "made it"
    );
    let events = read_text(&run.join("steps/work/events.jsonl"));
    assert!(
        events.contains("\"unparsed\":\"not json at all\""),
        "{events}"
    );
    let usage = &jsonl["usage"]["sessions"][0];
    assert_eq!(usage["session_id"], "j-1");
    assert_eq!(usage["input_tokens"], 7);
}
