//! Planning (issue 12, the `plan` label): a task whose first step is a planner splits its work
//! into sub-tasks, each a child task of it (SPEC §4's parents and children), and, for a task
//! linked to an issue, each child an issue of its own made a sub-issue of the parent's.
//!
//! The planner's structured output is the **plan file**: the step gets `ORCH_PLAN_FILE` (a path
//! in the task's scratch area, outside its worktree) and writes JSON there:
//!
//! ```json
//! {"tasks": [{"title": "Parse the config", "body": "Read `.orch.toml` ..."},
//!            {"title": "Write the docs"}]}
//! ```
//!
//! One to `max_plan_children` items ([`MaxPlanChildren`]: [`MAX_PLAN_ITEMS`] unless the global
//! config sets another, at most [`MAX_PLAN_ITEMS_CEILING`]); each a title (one line, 1 to 200 characters) and an
//! optional body (at most [`MAX_BODY_CHARS`] characters); no other key. A planner step that
//! writes no plan, or one that is not valid, fails with the reason and the task goes to
//! `needs_review` (a bad plan is not retried blindly). A valid plan is kept in the run's bundle
//! as `plan.json` and its items become children (each item once, whatever crashes: their
//! delivery id is the parent's, [`children_delivery`]); the planner's run then ends, the parent
//! rests `blocked` until every child is `done`, and its next run starts at its next step, which
//! sees the children's results in `context.json`.
//!
//! Whichever worker read the plan file (an embedded one, or a remote `orch worker` that sends it
//! to the daemon's `POST /v1/worker/runs/{run}/plan`), [`plan_children`] is the one place it is
//! checked and turned into children: a plan names no project, parent, agent or step (unknown
//! keys are refused), so its children are always the planning task's, in its project.
//!
//! Architecture invariant: no I/O; the worker reads the file and the store creates the tasks.

use serde::{Deserialize, Serialize};

use crate::forge::{marker, ForgeOp, KeyedOp};
use crate::input::{implicit_prompt, AUTO_AGENT};
use crate::model::{Step, StepAction, TaskId, TaskSpec, TaskTitle};
use crate::{NewTask, TaskDraft};

/// The variable naming the plan file.
pub const PLAN_FILE_VAR: &str = "ORCH_PLAN_FILE";

/// The most bytes of a plan file read.
pub const MAX_PLAN_FILE_BYTES: usize = 256 * 1024;

/// The most items a plan may have unless the global config's `max_plan_children` says otherwise.
pub const MAX_PLAN_ITEMS: usize = 20;

/// The highest `max_plan_children` a config may set.
pub const MAX_PLAN_ITEMS_CEILING: usize = 200;

/// `max_plan_children`: the most child tasks one plan may make (1 to
/// [`MAX_PLAN_ITEMS_CEILING`]; [`MAX_PLAN_ITEMS`] by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MaxPlanChildren(usize);

impl Default for MaxPlanChildren {
    fn default() -> Self {
        MaxPlanChildren(MAX_PLAN_ITEMS)
    }
}

impl MaxPlanChildren {
    /// A cap of `count` children, refused outside 1 to [`MAX_PLAN_ITEMS_CEILING`].
    pub fn new(count: u64) -> Result<MaxPlanChildren, String> {
        match usize::try_from(count) {
            Ok(count @ 1..=MAX_PLAN_ITEMS_CEILING) => Ok(MaxPlanChildren(count)),
            _ => Err(format!(
                "max_plan_children is {count}; give 1 to {MAX_PLAN_ITEMS_CEILING}"
            )),
        }
    }

    /// The cap.
    pub fn get(self) -> usize {
        self.0
    }
}

impl<'de> Deserialize<'de> for MaxPlanChildren {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        MaxPlanChildren::new(u64::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// The most characters of an item's body.
pub const MAX_BODY_CHARS: usize = 20_000;

/// The planner step's name.
pub const PLAN_STEP: &str = "plan";

/// The step after it, run once the children are done.
pub const WORK_STEP: &str = "agent";

/// The label that asks for a plan, unless `[forge] plan_label` names another.
pub const DEFAULT_PLAN_LABEL: &str = "plan";

/// One sub-task of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanItem {
    /// One line.
    pub title: String,
    /// What to do (may be empty).
    #[serde(default)]
    pub body: String,
}

/// A checked plan (what `plan.json` in the bundle holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskPlan {
    /// The sub-tasks, in order.
    pub tasks: Vec<PlanItem>,
}

impl TaskPlan {
    /// Read and check a plan file's bytes (at most `cap` items); the error says what is wrong
    /// and how to write it.
    pub fn parse(bytes: &[u8], cap: MaxPlanChildren) -> Result<TaskPlan, String> {
        const SHAPE: &str =
            "write JSON like {\"tasks\": [{\"title\": \"...\", \"body\": \"...\"}]}";
        if bytes.len() > MAX_PLAN_FILE_BYTES {
            return Err(format!(
                "the plan file has {} bytes; keep it under {MAX_PLAN_FILE_BYTES}",
                bytes.len()
            ));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "the plan file is not UTF-8 text")?;
        if text.trim().is_empty() {
            return Err(format!("the plan file is empty; {SHAPE}"));
        }
        let plan: TaskPlan = serde_json::from_str(text)
            .map_err(|e| format!("the plan file is not a plan ({e}); {SHAPE}"))?;
        plan.check(cap)?;
        Ok(plan)
    }

    /// Check every item, and that there are at most `cap`.
    pub fn check(&self, cap: MaxPlanChildren) -> Result<(), String> {
        if self.tasks.is_empty() {
            return Err("the plan has no tasks; give at least one sub-task".to_owned());
        }
        if self.tasks.len() > cap.get() {
            return Err(format!(
                "the plan has {} tasks; split the work into at most {} (max_plan_children)",
                self.tasks.len(),
                cap.get()
            ));
        }
        for (index, item) in self.tasks.iter().enumerate() {
            TaskTitle::parse(item.title.as_str())
                .map_err(|e| format!("tasks[{index}].title: {e}"))?;
            let chars = item.body.chars().count();
            if chars > MAX_BODY_CHARS {
                return Err(format!(
                    "tasks[{index}].body has {chars} characters; keep it under {MAX_BODY_CHARS}"
                ));
            }
        }
        Ok(())
    }
}

/// The prompt of the planner step for a task (an issue's title and body).
pub fn planner_prompt(title: &TaskTitle, body: &str) -> String {
    format!(
        "Plan this work; do not do it. Split it into sub-tasks that can each be done and \
         reviewed on their own (at most {MAX_PLAN_ITEMS}), and write them as JSON to the file \
         named by the environment variable {PLAN_FILE_VAR}: \
         {{\"tasks\": [{{\"title\": \"one line\", \"body\": \"what to do and how to check it\"}}]}}. \
         Change no file of the repository.\n\n{}",
        implicit_prompt(title, body)
    )
}

/// The prompt of the step after the planner: the work itself, once the sub-tasks are done.
pub fn work_prompt(title: &TaskTitle, body: &str) -> String {
    format!(
        "{}\n\nThe sub-tasks planned for this are done; their results are under `children` in \
         the context file ($ORCH_CONTEXT). Finish the work: put the parts together and check \
         them.",
        implicit_prompt(title, body)
    )
}

/// The steps of a task that is planned first: the planner, then the work (both routed until a
/// project's `default_agent` names the agent).
pub fn planned_steps(title: &TaskTitle, body: &str) -> Vec<Step> {
    let step = |name: &str, prompt: String, plan: bool| Step {
        name: name.to_owned(),
        action: StepAction::Agent {
            agent: AUTO_AGENT.to_owned(),
            prompt,
            model: None,
            profile: None,
        },
        timeout: None,
        network: true,
        plan,
    };
    vec![
        step(PLAN_STEP, planner_prompt(title, body), true),
        step(WORK_STEP, work_prompt(title, body), false),
    ]
}

impl TaskSpec {
    /// Whether this spec is planned first ([`planned_steps`]) with its agents still routed.
    pub fn is_routed_plan(&self) -> bool {
        match self.steps.as_slice() {
            [first, second] => first.plan
                && first.name == PLAN_STEP
                && second.name == WORK_STEP
                && [first, second].iter().all(
                    |s| matches!(&s.action, StepAction::Agent { agent, .. } if agent == AUTO_AGENT),
                ),
            _ => false,
        }
    }

    /// Give a routed planned spec's two steps the project's default agent. Returns whether it
    /// did.
    pub fn apply_default_agent_to_plan(&mut self, default_agent: &str) -> bool {
        if !self.is_routed_plan() {
            return false;
        }
        for step in &mut self.steps {
            if let StepAction::Agent { agent, .. } = &mut step.action {
                *agent = default_agent.to_owned();
            }
        }
        true
    }
}

/// Make a task that carries the plan label (an issue labelled `plan`) planned first: its
/// steps become [`planned_steps`] of its title and body. Only a task with the implicit step
/// (none given) is changed. Returns whether it was.
pub fn plan_if_labelled(spec: &mut TaskSpec, plan_label: &str) -> bool {
    if !spec.labels.iter().any(|l| l == plan_label) || !spec.has_routed_implicit_step() {
        return false;
    }
    spec.steps = planned_steps(&spec.title, &spec.body);
    true
}

/// The key a child made from item `index` carries in its spec (`spec.key`).
pub fn item_key(index: usize) -> String {
    format!("plan-item-{index}")
}

/// The item index of a child made from a plan, from its spec's key.
pub fn item_index(spec: &TaskSpec) -> Option<usize> {
    spec.key
        .as_deref()?
        .strip_prefix("plan-item-")?
        .parse()
        .ok()
}

/// The delivery id (source, id) under which a parent's children are created: once per parent,
/// all in one transaction, so a crash or a second run never makes them twice.
pub fn children_delivery(parent: TaskId) -> (&'static str, String) {
    ("plan", format!("task-{}", parent.0))
}

/// The children of `parent` for a checked plan: one task per item, in order, each with the
/// implicit agent step (title and body as its prompt, routed), the parent's labels but the plan
/// label, and its item's key.
pub fn children(
    parent: TaskId,
    parent_labels: &[String],
    plan_label: &str,
    plan: &TaskPlan,
) -> Result<Vec<NewTask>, String> {
    plan.tasks
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let spec = TaskSpec::parse(TaskDraft {
                key: Some(item_key(index)),
                title: item.title.clone(),
                body: item.body.clone(),
                labels: parent_labels
                    .iter()
                    .filter(|l| *l != plan_label)
                    .cloned()
                    .collect(),
                ..TaskDraft::default()
            })
            .map_err(|e| format!("tasks[{index}]: {}: {}", e.field, e.reason))?;
            Ok(NewTask {
                spec,
                needs_in_batch: Vec::new(),
                needs_existing: Vec::new(),
                parent: Some(parent),
                parent_in_batch: None,
            })
        })
        .collect()
}

/// What a project's configuration says about turning a plan into children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanRules<'a> {
    /// The label that asked for the plan (not given to the children).
    pub plan_label: &'a str,
    /// The project's `default_agent`, given to the children's steps (`auto` or none: routed).
    pub default_agent: Option<&'a str>,
    /// The most children one plan may make.
    pub max_children: MaxPlanChildren,
}

/// A planner's output, checked and turned into the children of `parent` (labelled
/// `parent_labels`): the one place a plan is judged, whichever worker read the file and
/// whichever front end (the embedded worker, the daemon's worker API) carries it out. The
/// checked plan (for the bundle's `plan.json`) and the children; the error says what is wrong.
pub fn plan_children(
    parent: TaskId,
    parent_labels: &[String],
    rules: PlanRules<'_>,
    bytes: &[u8],
) -> Result<(TaskPlan, Vec<NewTask>), String> {
    let plan = TaskPlan::parse(bytes, rules.max_children)?;
    let mut children = children(parent, parent_labels, rules.plan_label, &plan)?;
    if let Some(agent) = rules.default_agent.filter(|a| *a != AUTO_AGENT) {
        for child in &mut children {
            child.spec.apply_default_agent(agent);
        }
    }
    Ok((plan, children))
}

/// The issue of a child planned for a task linked to an issue: opened once per item (keyed by
/// the parent and the item's index), its body ending with the child's marker so the issue,
/// when it comes back by webhook or polling, is linked to the child and not made a new task.
pub fn child_issue_op(
    parent: TaskId,
    index: usize,
    child: TaskId,
    title: &str,
    body: &str,
    labels: Vec<String>,
) -> KeyedOp {
    let body = format!("{}\n\n{}", body.trim_end(), marker(child))
        .trim_start()
        .to_owned();
    KeyedOp {
        key: format!("plan:task-{}:item-{index}", parent.0),
        op: ForgeOp::CreateIssue {
            task: child,
            title: title.to_owned(),
            body,
            labels,
        },
    }
}

/// The link of a child's issue to its parent's (GitHub's sub-issues), once per item.
pub fn sub_issue_op(parent: TaskId, index: usize, parent_issue: u64, child_issue: u64) -> KeyedOp {
    KeyedOp {
        key: format!("sub-issue:task-{}:item-{index}", parent.0),
        op: ForgeOp::AddSubIssue {
            parent: parent_issue,
            child: child_issue,
        },
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile_tests;
