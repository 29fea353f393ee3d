//! `orch agents`, and the usage lines of `orch task get` / `orch status`.

use std::path::Path;

use anyhow::Context;
use orch_agents::preflight::{self, AgentInfo};
use orch_worker::project::ProjectConfig;
use serde_json::{json, Value};

use crate::cli::AgentsArgs;
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
    Ok(preflight::check_all(&config.agents, path.as_deref()).await)
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
