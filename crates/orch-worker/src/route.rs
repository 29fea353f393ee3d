//! Routing a claimed task and building its agent prompts: the worker's side of
//! `orch_agents::router` and the `step.j2` template.
//!
//! A task is routed when one of its agent steps says `agent: auto`; a step that names its agent
//! is never routed (its model and profile still apply). The decision is made once per run,
//! before the steps, and written to the bundle as `route.json` (with the router agent's sessions
//! in `route/events.jsonl`, listed in the manifest).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use orch_agents::profile::Profile;
use orch_agents::prompt::{self, Prompts};
use orch_agents::review::PriorReview;
use orch_agents::router::{self, Complexity, RouteDecision, RouteTask};
use orch_core::{StepAction, Task};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::bundle::{Bundle, ManifestEntry};
use crate::project::ProjectConfig;

/// The bundle file of the decision.
pub const ROUTE_FILE: &str = "route.json";

/// Whether any agent step of `task` asks to be routed.
pub fn needs_routing(task: &Task) -> bool {
    task.spec.steps.iter().any(
        |step| matches!(&step.action, StepAction::Agent { agent, .. } if router::is_auto(agent)),
    )
}

/// Route `task` if it needs it, and record the decision in the bundle. `Err` is a reason to
/// fail the task for good (a label names a profile the project lacks, a broken template).
pub async fn route_run(
    task: &Task,
    config: &ProjectConfig,
    prompts: &Prompts,
    bundle: &mut Bundle,
    sandbox: &orch_process::Sandbox,
    cancel: &CancellationToken,
) -> Result<Option<RouteDecision>, String> {
    if !needs_routing(task) {
        return Ok(None);
    }
    let started = now_ms();
    let route_task = RouteTask {
        id: task.id.0,
        title: task.spec.title.as_str(),
        body: &task.spec.body,
        labels: &task.spec.labels,
        sandbox,
    };
    let decision = router::route(&route_task, config.routing(), prompts, cancel)
        .await
        .map_err(|e| format!("routing failed: {e}"))?;
    // The router agent runs in a scratch directory that is gone by now; the bundle stands in.
    let cwd = bundle.path().to_owned();
    record_exchanges(
        bundle,
        "route",
        config.router.agent.as_deref().unwrap_or_default(),
        &decision.llm_attempts,
        cwd,
        started,
    );
    if let Err(e) = bundle.write_json(ROUTE_FILE, &decision) {
        tracing::warn!(task = %task.id, "could not write {ROUTE_FILE}: {e}");
    }
    Ok(Some(decision))
}

/// Write the sessions of `exchanges` to `<dir>/events.jsonl` and list them in the manifest as
/// one agent invocation named `dir` (`route` or `review`).
pub(crate) fn record_exchanges(
    bundle: &mut Bundle,
    dir: &str,
    agent: &str,
    exchanges: &[orch_agents::answer::Exchange],
    cwd: PathBuf,
    started_at_ms: i64,
) {
    if exchanges.is_empty() {
        return;
    }
    let events_rel = format!("{dir}/events.jsonl");
    let mut bytes = Vec::new();
    for exchange in exchanges {
        for event in &exchange.events {
            if let Ok(mut line) = serde_json::to_vec(event) {
                line.push(b'\n');
                bytes.extend_from_slice(&line);
            }
        }
    }
    if let Err(e) = crate::off_async(|| std::fs::create_dir_all(bundle.path().join(dir)))
        .and_then(|()| bundle.write_bytes(&events_rel, &bytes))
    {
        tracing::warn!("could not write {events_rel}: {e}");
    }
    let stored =
        crate::off_async(|| std::fs::read(bundle.path().join(&events_rel))).unwrap_or_default();
    bundle.record(ManifestEntry::Agent {
        step: dir.to_owned(),
        agent: agent.to_owned(),
        argv: Vec::new(),
        cwd,
        started_at_ms,
        ended_at_ms: now_ms(),
        success: exchanges.last().is_some_and(|e| e.error.is_none()),
        events_path: PathBuf::from(&events_rel),
        events_bytes: stored.len() as u64,
        events_sha256: {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&stored))
        },
    });
}

/// What an agent step runs with, once routing and the project's profiles are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedStep {
    /// The agent.
    pub agent: String,
    /// The model (none: the agent's default).
    pub model: Option<String>,
    /// The complexity, when the step was routed.
    pub complexity: Option<Complexity>,
    /// The profile, when there is one.
    pub profile: Option<Profile>,
}

/// Resolve an agent step: `auto` takes the decision's agent, model and profile; the step's own
/// `model` and `profile` always win.
pub fn resolve_step(
    agent: &str,
    model: Option<&str>,
    profile: Option<&str>,
    decision: Option<&RouteDecision>,
    config: &ProjectConfig,
) -> Result<ResolvedStep, String> {
    let named_profile = match profile {
        Some(name) => Some(config.profiles.get(name).cloned().ok_or_else(|| {
            format!("the step names profile `{name}`, which .orch.toml does not define under [profiles]")
        })?),
        None => None,
    };
    if router::is_auto(agent) {
        let decision = decision.ok_or("the step says `agent: auto` but the task was not routed")?;
        let routed_profile = (!decision.profile.is_empty()).then(|| decision.profile.clone());
        return Ok(ResolvedStep {
            agent: decision.agent.clone(),
            model: model.map(str::to_owned).or_else(|| decision.model.clone()),
            complexity: Some(decision.complexity),
            profile: named_profile.or(routed_profile),
        });
    }
    Ok(ResolvedStep {
        agent: agent.to_owned(),
        model: model.map(str::to_owned),
        complexity: None,
        profile: named_profile,
    })
}

/// An earlier step, for the prompt.
pub struct EarlierStep<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its status.
    pub status: String,
    /// Its summary.
    pub summary: &'a str,
}

/// Render an agent step's prompt through `step.j2`.
pub fn step_prompt(
    prompts: &Prompts,
    prompt_text: &str,
    step: &ResolvedStep,
    review_feedback: &[PriorReview],
    earlier_steps: &[EarlierStep<'_>],
) -> Result<String, String> {
    let earlier: Vec<_> = earlier_steps
        .iter()
        .map(|s| json!({ "name": s.name, "status": s.status, "summary": s.summary }))
        .collect();
    let context = json!({
        "prompt": prompt_text,
        "agent": step.agent,
        "model": step.model,
        "complexity": step.complexity,
        "profile": step.profile,
        "review_feedback": review_feedback,
        "earlier_steps": earlier,
    });
    prompts
        .render(prompt::STEP, context)
        .map_err(|e| e.to_string())
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
