//! `orch task route <id>`: compute and print the router's decision for a task without running it.

use anyhow::Context;
use orch_agents::prompt::Prompts;
use orch_agents::router::{self, RouteSource, RouteTask};
use orch_core::{StepAction, TaskId};
use orch_worker::project::ProjectConfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::TaskIdArgs;
use crate::commands::open_store;
use crate::config::Settings;
use crate::output::print_json;
use crate::UserError;

pub async fn task_route(settings: &Settings, args: TaskIdArgs) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let task = store.task(TaskId(args.id)).await?;
    let projects = store.projects().await?;
    let project = projects
        .iter()
        .find(|p| p.id == task.project)
        .with_context(|| format!("find the project of task {}", task.id))?;
    let project_dir = std::path::Path::new(&project.path);
    // The same settings the worker routes with: the global config under the project's.
    let config = ProjectConfig::load_merged(&settings.home, project_dir)
        .map_err(|e| UserError::new(e.to_string()))?;
    let prompts = Prompts::load(project_dir).map_err(|e| UserError::new(e.to_string()))?;
    // The router's agent reads the task's text: it is confined as a worker would confine it.
    let sandbox = match config.sandbox.decide().map_err(UserError::new)? {
        orch_worker::sandbox::SandboxDecision::Off => orch_process::Sandbox::Off,
        orch_worker::sandbox::SandboxDecision::Enforce { .. } => orch_process::Sandbox::Enforced(
            orch_worker::sandbox::answer_policy(&settings.home, &config.sandbox),
        ),
    };
    let route_task = RouteTask {
        id: task.id.0,
        title: task.spec.title.as_str(),
        body: &task.spec.body,
        labels: &task.spec.labels,
        sandbox: &sandbox,
    };
    let decision = router::route(
        &route_task,
        config.routing(),
        &prompts,
        &CancellationToken::new(),
    )
    .await
    .map_err(|e| UserError::new(format!("task {}: {e}", task.id)))?;
    let mut routed_steps = Vec::new();
    let mut explicit_steps = Vec::new();
    for step in &task.spec.steps {
        if let StepAction::Agent { agent, .. } = &step.action {
            if router::is_auto(agent) {
                routed_steps.push(step.name.clone());
            } else {
                explicit_steps.push(json!({ "step": step.name, "agent": agent }));
            }
        }
    }
    if args.json {
        return print_json(&json!({
            "task": task.id.0,
            "decision": decision,
            "routed_steps": routed_steps,
            "explicit_steps": explicit_steps,
        }));
    }
    let decided_by = match decision.source {
        RouteSource::Explicit => "the step".to_owned(),
        RouteSource::Label => "label".to_owned(),
        RouteSource::Rule => format!("rule `{}`", decision.rule.as_deref().unwrap_or("?")),
        RouteSource::Llm => format!(
            "router agent `{}` (attempt {} of {})",
            config.router.agent.as_deref().unwrap_or("?"),
            decision.llm_attempts.len(),
            config.router.max_route_attempts
        ),
        RouteSource::RoundRobin => "round robin".to_owned(),
    };
    println!("task {}: {}", task.id, task.spec.title);
    println!("agent:      {}", decision.agent);
    println!(
        "model:      {}",
        decision.model.as_deref().unwrap_or("(the agent's default)")
    );
    println!("complexity: {}", decision.complexity);
    let profile = match (&decision.profile_name, decision.profile.is_empty()) {
        (_, true) => "none".to_owned(),
        (Some(name), false) => format!("{name} ({})", decision.profile.role),
        (None, false) => format!("written by the router ({})", decision.profile.role),
    };
    println!("profile:    {profile}");
    println!("decided by: {decided_by}");
    println!("why:");
    for line in &decision.why {
        println!("  - {line}");
    }
    for exchange in &decision.llm_attempts {
        match &exchange.error {
            Some(error) => println!("router attempt {}: refused: {error}", exchange.attempt),
            None => println!("router attempt {}: accepted", exchange.attempt),
        }
    }
    if routed_steps.is_empty() {
        println!("no step says `agent: auto`, so no step uses this decision");
    } else {
        println!("used by:    {}", routed_steps.join(", "));
    }
    for step in &explicit_steps {
        println!(
            "step {} names agent {} and is not routed",
            step["step"].as_str().unwrap_or_default(),
            step["agent"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}
