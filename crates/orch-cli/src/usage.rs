//! `orch usage`: spend per day, project and agent, and today against the claim limits.

use serde_json::Value;

use crate::cli::UsageArgs;
use crate::client::{Backend, Remote};
use crate::config::Settings;
use crate::output::{print_json, table};

pub async fn usage(settings: &Settings, remote: &Remote, args: UsageArgs) -> anyhow::Result<()> {
    let backend = Backend::open(settings, remote, None).await?;
    let report = backend.usage_report(&settings.home, args.days).await?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "today: {} ({}); daily budgets reset at midnight",
        report["day"].as_str().unwrap_or("?"),
        report["time_zone"].as_str().unwrap_or("UTC")
    );
    for (kind, key) in [
        ("project", "projects"),
        ("agent", "agents"),
        ("label", "labels"),
    ] {
        let gauges = report["today"][key].as_array().cloned().unwrap_or_default();
        if gauges.is_empty() {
            continue;
        }
        let mut rows = table(&[kind, "running", "runs", "sessions", "tokens", "cost"]);
        for gauge in &gauges {
            let spent = &gauge["spent"];
            let limit = &gauge["limit"];
            rows.add_row(vec![
                gauge["name"].as_str().unwrap_or("?").to_owned(),
                against(&gauge["running"], &gauge["running_limit"], false),
                against(&spent["runs"], &limit["runs"], false),
                against(&spent["sessions"], &limit["sessions"], false),
                against(&spent["tokens"], &limit["tokens"], false),
                against(&spent["cost_usd"], &limit["cost_usd"], true),
            ]);
        }
        println!("\n{rows}");
    }
    let days = report["days"].as_array().cloned().unwrap_or_default();
    if days.is_empty() {
        println!("\nno agent usage recorded in the last {} day(s)", args.days);
        return Ok(());
    }
    let mut rows = table(&[
        "day (UTC)",
        "project",
        "agent",
        "runs",
        "sessions",
        "tokens",
        "cost",
    ]);
    for day in &days {
        rows.add_row(vec![
            day["day"].as_str().unwrap_or("?").to_owned(),
            day["project"].as_str().unwrap_or("?").to_owned(),
            day["agent"].as_str().unwrap_or("?").to_owned(),
            day["runs"].to_string(),
            day["sessions"].to_string(),
            day["tokens"].to_string(),
            money(&day["cost_usd"]),
        ]);
    }
    println!("\n{rows}");
    Ok(())
}

fn money(value: &Value) -> String {
    format!("${:.2}", value.as_f64().unwrap_or(0.0))
}

/// `3`, or `3/5` against a limit.
fn against(used: &Value, limit: &Value, dollars: bool) -> String {
    let used = if dollars {
        money(used)
    } else {
        used.to_string()
    };
    match (limit.is_null(), dollars) {
        (true, _) => used,
        (false, true) => format!("{used}/{}", money(limit)),
        (false, false) => format!("{used}/{limit}"),
    }
}
