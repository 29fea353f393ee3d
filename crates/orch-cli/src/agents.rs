//! `orch agents`, and the usage lines of `orch task get` / `orch status`.

use std::path::Path;

use anyhow::Context;
use orch_agents::preflight::{self, AgentInfo};
use orch_worker::project::ProjectConfig;
use serde_json::{json, Value};

use crate::cli::{AgentSimArgs, AgentsArgs, ModelServerArgs, TaskAttachArgs, TaskKillArgs};
use crate::client::{Backend, Remote};
use crate::config::Settings;
use crate::output::{self, print_json};
use crate::UserError;

/// `orch agents`: exit 0 when every enabled agent is ready.
pub async fn agents(settings: &Settings, args: AgentsArgs) -> anyhow::Result<bool> {
    let project = match args.project {
        Some(dir) => dir,
        None => std::env::current_dir().context("read the current directory")?,
    };
    let infos = check(settings, &project).await?;
    if args.json {
        print_json(&json!({ "agents": infos }))?;
    } else {
        print_table(&infos);
    }
    Ok(infos.iter().all(|i| !i.enabled || i.ready))
}

/// Preflight every agent under the settings of `project` (global config merged under its
/// `.orch.toml`).
pub async fn check(settings: &Settings, project: &Path) -> anyhow::Result<Vec<AgentInfo>> {
    let config = ProjectConfig::load_merged(&settings.home, project)
        .map_err(|e| UserError::new(e.to_string()))?;
    let path = std::env::var("PATH").ok();
    let cache = settings.home.join("agent-versions.json");
    Ok(preflight::check_all_cached(&config.agents, path.as_deref(), &cache).await)
}

/// The agents as a table.
pub fn print_table(infos: &[AgentInfo]) {
    let mut table = output::table(&[
        "agent",
        "installed",
        "version",
        "minimum",
        "enabled",
        "ready",
    ]);
    for info in infos {
        table.add_row(vec![
            info.name.clone(),
            match &info.path {
                Some(path) => path.display().to_string(),
                None if info.name == "sim" => "built in".to_owned(),
                None => "no".to_owned(),
            },
            info.version.clone().unwrap_or_else(|| "-".into()),
            info.min_version.clone().unwrap_or_else(|| "-".into()),
            if info.enabled { "yes" } else { "no" }.to_owned(),
            if info.ready { "yes" } else { "no" }.to_owned(),
        ]);
    }
    println!("{table}");
    for info in infos.iter().filter(|i| i.enabled && !i.ready) {
        if let Some(problem) = &info.problem {
            println!("{}: {problem}", info.name);
        }
    }
    if infos.iter().any(|i| !i.enabled) {
        println!("real agent CLIs run only when `[agents] enable_real_cli = true` (or ORCH_ENABLE_REAL_CLI=1) and they are in `[agents] allowed` when that is set");
    }
}

/// Totals over usage rows.
pub fn sum_usage(rows: &Value) -> Value {
    let rows = rows.as_array().cloned().unwrap_or_default();
    let sum = |key: &str| rows.iter().filter_map(|r| r[key].as_u64()).sum::<u64>();
    let cost: f64 = rows.iter().filter_map(|r| r["cost_usd"].as_f64()).sum();
    json!({
        "sessions": rows.len(),
        "input_tokens": sum("input_tokens"),
        "output_tokens": sum("output_tokens"),
        "cost_usd": cost,
    })
}

/// The usage lines of `orch task get`.
pub fn print_task_usage(usage: &Value) {
    let total = &usage["total"];
    if total["sessions"].as_u64().unwrap_or(0) == 0 {
        return;
    }
    println!(
        "usage:    {} in / {} out tokens, ${:.4} over {} agent session(s)",
        total["input_tokens"],
        total["output_tokens"],
        total["cost_usd"].as_f64().unwrap_or(0.0),
        total["sessions"]
    );
    for row in usage["sessions"].as_array().into_iter().flatten() {
        println!(
            "          run {} step {}: {} {} — {} in / {} out, ${:.4}, session {}",
            row["run"],
            row["step"].as_str().unwrap_or(""),
            row["agent"].as_str().unwrap_or(""),
            row["model"].as_str().unwrap_or(""),
            row["input_tokens"],
            row["output_tokens"],
            row["cost_usd"].as_f64().unwrap_or(0.0),
            row["session_id"].as_str().unwrap_or("-"),
        );
    }
}

/// The usage tables of `orch status`.
pub fn print_usage_summary(usage: &Value) {
    for (key, title) in [("by_agent", "agent"), ("by_day", "day")] {
        let rows = usage[key].as_array().cloned().unwrap_or_default();
        if rows.is_empty() {
            continue;
        }
        let mut table = output::table(&[
            title,
            "sessions",
            "input tokens",
            "output tokens",
            "cost (USD)",
        ]);
        for row in rows {
            table.add_row(vec![
                row["key"].as_str().unwrap_or("").to_owned(),
                row["sessions"].to_string(),
                row["input_tokens"].to_string(),
                row["output_tokens"].to_string(),
                format!("{:.4}", row["cost_usd"].as_f64().unwrap_or(0.0)),
            ]);
        }
        println!("{table}");
    }
}

/// `orch agent-sim`: the sim agent as a process, printing its events as JSON lines.
pub async fn agent_sim(args: AgentSimArgs) -> anyhow::Result<bool> {
    use std::io::Write;
    let request = orch_agents::AgentRequest {
        prompt: args.prompt.join(" "),
        workdir: args.workdir,
        resume_session: Some(args.resume).filter(|s| !s.is_empty()),
        // The process was started with the step's environment (`ORCH_ASK_FILE`, answered
        // values): `@ask` reads it from the request, as in process; the planner's plan file
        // reaches it as a variable too.
        env: std::env::vars()
            .chain(
                args.plan_file
                    .into_iter()
                    .map(|path| (orch_core::planner::PLAN_FILE_VAR.to_owned(), path)),
            )
            .collect(),
        ..orch_agents::AgentRequest::default()
    };
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let agent = orch_agents::sim::SimAgent::default();
    let printer = tokio::spawn(async move {
        while let Some(event) = receiver.recv().await {
            let mut out = std::io::stdout().lock();
            if let Ok(line) = serde_json::to_string(&event) {
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        }
    });
    let result = agent
        .run(&request, sender, tokio_util::sync::CancellationToken::new())
        .await;
    let _ = printer.await;
    if let Err(e) = &result {
        eprintln!("{e}");
    }
    Ok(result.is_ok())
}

/// `orch task live`.
pub fn live(settings: &Settings, json_out: bool) -> anyhow::Result<()> {
    let socket = orch_agents::tmux::socket(&settings.home);
    let sessions = orch_agents::tmux::list(&socket).map_err(|e| UserError::new(e.to_string()))?;
    if json_out {
        return print_json(&json!({ "socket": socket, "sessions": sessions }));
    }
    if sessions.is_empty() {
        println!("no live agent sessions (agents run in tmux when their settings say `session = \"tmux\"`)");
        return Ok(());
    }
    let mut table = output::table(&["task", "session", "started", "pid"]);
    for s in &sessions {
        table.add_row(vec![
            s.task.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
            s.name.clone(),
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(u64::try_from(s.created).unwrap_or(0)),
            )
            .to_string(),
            s.pane_pid.map(|p| p.to_string()).unwrap_or_default(),
        ]);
    }
    println!("{table}");
    println!("attach with `orch task attach <task>`; end one with `orch task kill <task>`");
    Ok(())
}

/// `orch task attach`.
pub fn attach(settings: &Settings, args: TaskAttachArgs) -> anyhow::Result<()> {
    let socket = orch_agents::tmux::socket(&settings.home);
    let name = orch_agents::tmux::session_name(args.id);
    if args.capture {
        let text = orch_agents::tmux::capture(&socket, &name)
            .map_err(|e| UserError::new(e.to_string()))?;
        print!("{text}");
        return Ok(());
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(UserError::new(
            "attaching needs a terminal; use `orch task attach --capture` to print the session instead".to_owned(),
        )
        .into());
    }
    orch_agents::tmux::capture(&socket, &name).map_err(|e| UserError::new(e.to_string()))?;
    // In orch's own process group, on this terminal: attaching needs the foreground.
    let status = orch_agents::tmux::tmux_command(&socket, &["attach-session", "-t", &name])
        .stdio(
            orch_process::Io::Inherit,
            orch_process::Io::Inherit,
            orch_process::Io::Inherit,
        )
        .start_blocking()
        .context("run tmux")?
        .wait()
        .context("wait for tmux")?;
    if !status.success() {
        anyhow::bail!("tmux attach ended with {status}");
    }
    Ok(())
}

/// `orch task kill`: cancel the task (so no worker retries it) and end its live session now,
/// through the one app action (`orch_app::App::kill_live_session`): by the daemon of the home
/// (or `--server`) when one runs, else on the store.
pub async fn kill(settings: &Settings, remote: &Remote, args: TaskKillArgs) -> anyhow::Result<()> {
    let backend = Backend::open(settings, remote, None).await?;
    let killed = backend.kill(settings, args.id).await?;
    if args.json {
        return print_json(&killed);
    }
    println!(
        "task {}: live session {} ended; the task is {}",
        killed.id, killed.session, killed.status
    );
    Ok(())
}

/// `orch model-server`: the scripted model server, until Ctrl-C or SIGTERM.
pub async fn model_server(args: ModelServerArgs) -> anyhow::Result<()> {
    let script = orch_modelsim::Script::load(&args.script)
        .map_err(|e| UserError::new(format!("{}: {e}", args.script.display())))?;
    let server = orch_modelsim::ModelServer::start_on(args.listen, script)
        .await
        .map_err(|e| UserError::new(format!("cannot serve on {}: {e}", args.listen)))?;
    // The first line says where it listens (port 0 picks a free one).
    println!("{}", server.base_url());
    eprintln!(
        "scripted model server on {} (Ctrl-C stops it)",
        server.base_url()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listen for SIGTERM")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    server
        .shutdown()
        .await
        .map_err(|e| anyhow::anyhow!("the model server failed: {e}"))
}
