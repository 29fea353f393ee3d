//! `orch usage`: spend per day, project and agent, and today against the claim limits.

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
        report.day, report.time_zone
    );
    let today = &report.today;
    for (kind, gauges) in [
        ("project", &today.projects),
        ("agent", &today.agents),
        ("label", &today.labels),
    ] {
        if gauges.is_empty() {
            continue;
        }
        let mut rows = table(&[kind, "running", "runs", "sessions", "tokens", "cost"]);
        for gauge in gauges {
            let (spent, limit) = (&gauge.spent, &gauge.limit);
            rows.add_row(vec![
                gauge.name.clone(),
                against(gauge.running, gauge.running_limit),
                against(spent.runs, limit.runs),
                against(spent.sessions, limit.sessions),
                against(spent.tokens, limit.tokens),
                against(Money(spent.cost_usd), limit.cost_usd.map(Money)),
            ]);
        }
        println!("\n{rows}");
    }
    if report.days.is_empty() {
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
    for day in &report.days {
        rows.add_row(vec![
            day.day.clone(),
            day.project.clone(),
            day.agent.clone(),
            day.runs.to_string(),
            day.sessions.to_string(),
            day.tokens.to_string(),
            Money(day.cost_usd).to_string(),
        ]);
    }
    println!("\n{rows}");
    Ok(())
}

/// US dollars, to the cent.
struct Money(f64);

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${:.2}", self.0)
    }
}

/// `3`, or `3/5` against a limit.
fn against<T: std::fmt::Display>(used: T, limit: Option<T>) -> String {
    match limit {
        Some(limit) => format!("{used}/{limit}"),
        None => used.to_string(),
    }
}
