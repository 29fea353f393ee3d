//! Workflow and task files: the YAML formats, their JSON Schemas, and validation that points at
//! the file, line and column of every problem.
//!
//! Parsing has two passes. Serde (through `marked_yaml`, which keeps positions) refuses unknown
//! keys and wrong types; then [`validate`] checks what serde cannot: unique ids, `needs` that name
//! real tasks, no cycles, one action per step, durations that parse.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use crate::dag;
use crate::input::{
    check_argv, check_cwd, check_max_attempts, check_step_name, check_timeout, default_prompt,
};
use crate::model::{Command, NewTask, Step, StepAction, TaskSpec, TaskTitle};
use crate::retry::RetryPolicy;

mod errors;
mod merge;
mod schema;

use errors::{error, load_error, node_error, start_mappings_at_their_first_key, within_text};
pub use merge::{MergeFile, MergeModeFile};
pub use schema::{task_schema, workflow_schema};

/// A value with the line and column (both 1-based) where it starts in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Its position.
    pub at: Position,
}

/// A 1-based line and column in a file; 0 means unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl Position {
    fn of_marker(marker: Option<&marked_yaml::Marker>) -> Position {
        marker.map_or_else(Position::default, |m| Position {
            line: m.line(),
            column: m.column(),
        })
    }
}

impl<'de, T> Deserialize<'de> for Located<T>
where
    T: Deserialize<'de> + Clone,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = marked_yaml::Spanned::<T>::deserialize(deserializer)?;
        Ok(Located {
            at: Position::of_marker(spanned.span().start()),
            value: (*spanned).clone(),
        })
    }
}

/// A workflow file: several tasks with `needs:` dependencies between them.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "orch workflow file")]
pub struct WorkflowFile {
    /// A name for the workflow, shown in listings.
    #[serde(default)]
    pub name: Option<String>,
    /// The project (directory) the tasks belong to, absolute or relative to this file's
    /// directory. Default: the repository (or directory) `orch run` is started in;
    /// `orch run --project` overrides it.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub project: Option<Located<String>>,
    /// Values every task gets unless it sets its own.
    #[serde(default)]
    pub defaults: Option<DefaultsFile>,
    /// The tasks. Each needs an `id` unique in this file.
    #[schemars(with = "Vec<TaskFile>")]
    pub tasks: Located<Vec<Located<TaskFile>>>,
    /// Land the workflow's final task (the one no task needs) in the project's checkout once
    /// it is done; a task's own `merge:` wins.
    #[serde(default)]
    #[schemars(with = "Option<MergeFile>")]
    pub merge: Option<Located<MergeFile>>,
}

/// Defaults for the tasks of a workflow.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultsFile {
    /// Default retry policy.
    #[serde(default)]
    pub retry: Option<RetryFile>,
    /// Default timeout of a whole run, such as `30m`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Located<String>>,
    /// Default priority.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Labels added to every task.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// One task: in a workflow's `tasks:` list, or alone in a task file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "orch task file")]
pub struct TaskFile {
    /// Identifier other tasks use in `needs`. Required in a workflow, optional in a task file.
    #[serde(default)]
    #[schemars(
        with = "Option<String>",
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    )]
    pub id: Option<Located<String>>,
    /// One-line title.
    #[schemars(with = "String")]
    pub title: Located<String>,
    /// Longer description; agent steps without a prompt get it as their prompt.
    #[serde(default)]
    pub body: Option<String>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Higher runs first. Default 0.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Ids of tasks in the same workflow that must be `done` first.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub needs: Vec<Located<String>>,
    /// The steps, run in order in the task's workspace.
    #[serde(default)]
    #[schemars(with = "Vec<StepFile>")]
    pub steps: Vec<Located<StepFile>>,
    /// Retry policy for this task.
    #[serde(default)]
    pub retry: Option<RetryFile>,
    /// Timeout of a whole run, such as `30m`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Located<String>>,
    /// Wait for `orch task approve` before running.
    #[serde(default)]
    pub requires_approval: bool,
    /// Land this task's change in the project's checkout once it is done (workflow files; the
    /// daemon does it as `orch task merge` would, once). A refused merge is recorded on the
    /// task as a `merge_refused` event; the task stays done.
    #[serde(default)]
    #[schemars(with = "Option<MergeFile>")]
    pub merge: Option<Located<MergeFile>>,
    /// What the task's worktree starts from: `dependencies` (default: one dependency's branch
    /// as is, several merged in `needs` order, the base branch without any) or `base` (the
    /// project's base branch, ignoring what the dependencies changed).
    #[serde(default)]
    pub from: Option<crate::model::StartFrom>,
    /// A key unique among the project's live (unfinished) tasks: while a task with this key
    /// lives, submitting another returns it instead of creating a second. (Not `id`, which is
    /// local to this file.)
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub unique_key: Option<Located<String>>,
    /// Tools the task needs on the worker: `{name, version: ">=1.2", sha256, env, network}`.
    /// Checked before the worktree is made; a missing or mismatched tool fails the task.
    #[serde(default)]
    #[schemars(with = "Vec<crate::tools::ToolRecipe>")]
    pub tools: Vec<Located<crate::tools::ToolRecipe>>,
    /// The `id` of this task's parent in the same workflow: the parent rests `blocked` until
    /// all its children are done, then continues; a failed child sends it to `needs_review`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub parent: Option<Located<String>>,
    /// The most one run may spend on agents: `{tokens: N, cost_usd: X}`. Passing it stops the
    /// agent mid-session; the task goes to `needs_review` (failure class `budget_exceeded`).
    #[serde(default)]
    #[schemars(with = "Option<crate::model::TaskBudget>")]
    pub budget: Option<Located<crate::model::TaskBudget>>,
}

/// A retry policy in a file; unset fields keep their defaults.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryFile {
    /// Runs the task may have in all (at least 1).
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub max_attempts: Option<Located<u32>>,
    /// Wait after the first failure, such as `10s`; doubles after each further one.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub backoff: Option<Located<String>>,
    /// The wait never grows past this, such as `10m`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub max_backoff: Option<Located<String>>,
    /// Up to this much random delay is added, such as `2s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub jitter: Option<Located<String>>,
}

/// One step: either `exec` (commands) or `agent` (an AI agent with a prompt).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    /// Name, unique within the task. Default: `step-<n>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Commands to run in order, each an argv array (never a shell string).
    #[serde(default)]
    pub exec: Option<Vec<CommandFile>>,
    /// The agent to run: `sim`, `claude`, `codex`, `opencode`, ..., or `auto` to let the router
    /// choose (labels, `[[router.rules]]`, the router agent, round robin; see `orch task route`).
    #[serde(default)]
    pub agent: Option<String>,
    /// The agent's prompt. Default: the task's body, or its title.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub prompt: Option<Located<String>>,
    /// Model for the agent.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub model: Option<Located<String>>,
    /// Agent profile.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub profile: Option<Located<String>>,
    /// Timeout of the whole step, such as `5m`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Located<String>>,
    /// `false`: the step's commands or agent get no network at all (a network namespace with
    /// only a down loopback; not even the host's 127.0.0.1). Default `true`.
    #[serde(default)]
    pub network: Option<bool>,
    /// Tools this step needs; they join the task's `tools` (all are checked before the task's
    /// worktree is made).
    #[serde(default)]
    #[schemars(with = "Vec<crate::tools::ToolRecipe>")]
    pub tools: Vec<Located<crate::tools::ToolRecipe>>,
}

/// One command of an exec step.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandFile {
    /// Program and arguments, such as `[cargo, test, --quiet]`.
    #[schemars(with = "Vec<String>", length(min = 1))]
    pub argv: Located<Vec<String>>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory relative to the workspace.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cwd: Option<Located<String>>,
    /// Timeout, such as `90s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Located<String>>,
}

/// A problem in a workflow or task file, with where it is and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{}:{}: {message}", at.line, at.column)]
pub struct SpecError {
    /// The file, as the user named it.
    pub file: String,
    /// Where in the file.
    pub at: Position,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A validated workflow: tasks in submission order with dependencies as batch indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    /// The workflow's name.
    pub name: Option<String>,
    /// The `project:` it names, as written (relative to the file's directory unless absolute).
    pub project: Option<String>,
    /// Its tasks; every `needs_in_batch` index points at an earlier task.
    pub tasks: Vec<NewTask>,
}

fn parse_yaml<T: for<'de> Deserialize<'de>>(file: &str, text: &str) -> Result<T, SpecError> {
    let options = marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true);
    let mut node = marked_yaml::parse_yaml_with_options(0, text, options)
        .map_err(|e| load_error(file, text, &e))?;
    start_mappings_at_their_first_key(&mut node);
    marked_yaml::from_node(&node).map_err(|e| node_error(file, &node, &e))
}

/// Every error pointing inside the text, whichever check found it.
fn clamped<T>(text: &str, result: Result<T, SpecError>) -> Result<T, SpecError> {
    result.map_err(|mut error| {
        error.at = within_text(text, error.at);
        error
    })
}

/// Parse and validate a workflow file. `file` is the name used in error messages.
pub fn parse_workflow(file: &str, text: &str) -> Result<Workflow, SpecError> {
    clamped(
        text,
        parse_yaml(file, text).and_then(|parsed| validate_workflow(file, parsed)),
    )
}

/// Parse and validate a single-task file.
pub fn parse_task(file: &str, text: &str) -> Result<TaskSpec, SpecError> {
    let parsed = parse_yaml::<TaskFile>(file, text);
    clamped(
        text,
        parsed.and_then(|parsed| {
            if let Some(parent) = &parsed.parent {
                return Err(error(
                    file,
                    parent.at,
                    "`parent` names a task of the same workflow file; for a single task give the parent's number with `orch task add --parent ID`",
                ));
            }
            task_spec(file, &parsed, &Defaults::default())
        }),
    )
}

#[derive(Default)]
struct Defaults {
    retry: RetryPolicy,
    timeout: Option<Duration>,
    priority: i32,
    labels: Vec<String>,
}

fn parse_duration(file: &str, field: &str, raw: &Located<String>) -> Result<Duration, SpecError> {
    humantime::parse_duration(raw.value.trim()).map_err(|e| {
        error(
            file,
            raw.at,
            format!(
                "`{field}: {}` is not a duration ({e}); write it like `30s`, `5m` or `1h 30m`",
                raw.value
            ),
        )
    })
}

fn optional_duration(
    file: &str,
    field: &str,
    raw: &Option<Located<String>>,
) -> Result<Option<Duration>, SpecError> {
    raw.as_ref()
        .map(|r| parse_duration(file, field, r))
        .transpose()
}

/// A `timeout` field: a duration, and not zero (a zero timeout would stop every run at once).
fn optional_timeout(
    file: &str,
    field: &str,
    raw: &Option<Located<String>>,
) -> Result<Option<Duration>, SpecError> {
    let Some(located) = raw else { return Ok(None) };
    let duration = parse_duration(file, field, located)?;
    check_timeout(field, duration).map_err(|m| error(file, located.at, m))?;
    Ok(Some(duration))
}

fn retry_policy(
    file: &str,
    raw: Option<&RetryFile>,
    base: RetryPolicy,
) -> Result<RetryPolicy, SpecError> {
    let Some(raw) = raw else { return Ok(base) };
    if let Some(max_attempts) = &raw.max_attempts {
        check_max_attempts(max_attempts.value).map_err(|m| error(file, max_attempts.at, m))?;
    }
    let policy = RetryPolicy {
        max_attempts: raw
            .max_attempts
            .as_ref()
            .map_or(base.max_attempts, |m| m.value),
        backoff_base: optional_duration(file, "backoff", &raw.backoff)?
            .unwrap_or(base.backoff_base),
        backoff_max: optional_duration(file, "max_backoff", &raw.max_backoff)?
            .unwrap_or(base.backoff_max),
        jitter: optional_duration(file, "jitter", &raw.jitter)?.unwrap_or(base.jitter),
    };
    Ok(policy)
}

fn task_spec(file: &str, raw: &TaskFile, defaults: &Defaults) -> Result<TaskSpec, SpecError> {
    let title = TaskTitle::parse(raw.title.value.clone())
        .map_err(|e| error(file, raw.title.at, e.to_string()))?;
    let body = raw.body.clone().unwrap_or_default();
    let mut steps = Vec::with_capacity(raw.steps.len());
    let mut step_names: HashMap<String, Position> = HashMap::new();
    for (index, located) in raw.steps.iter().enumerate() {
        let step = step(file, &located.value, located.at, index, &title, &body)?;
        if let Some(first) = step_names.insert(step.name.clone(), located.at) {
            return Err(error(
                file,
                located.at,
                format!(
                    "step name `{}` is used twice in this task (first at line {}); give each step a unique `name`",
                    step.name, first.line
                ),
            ));
        }
        steps.push(step);
    }
    let mut tools: Vec<crate::tools::ToolRecipe> = Vec::new();
    let step_tools = raw.steps.iter().flat_map(|s| s.value.tools.iter());
    for located in raw.tools.iter().chain(step_tools) {
        located
            .value
            .validate()
            .map_err(|m| error(file, located.at, m))?;
        match tools.iter().find(|t| t.name == located.value.name) {
            Some(same) if *same == located.value => {}
            Some(_) => {
                return Err(error(
                    file,
                    located.at,
                    format!(
                        "tool `{}` is declared twice with different requirements; keep one entry",
                        located.value.name
                    ),
                ))
            }
            None => tools.push(located.value.clone()),
        }
    }
    let unique_key = match &raw.unique_key {
        Some(key) => {
            crate::input::check_unique_key(&key.value).map_err(|m| error(file, key.at, m))?;
            Some(key.value.clone())
        }
        None => None,
    };
    if steps.is_empty() {
        // As for every front end: a task with only a title and body is agent work.
        steps.push(crate::input::implicit_agent_step(&title, &body));
    }
    let mut labels = defaults.labels.clone();
    for label in &raw.labels {
        if !labels.contains(label) {
            labels.push(label.clone());
        }
    }
    Ok(TaskSpec {
        key: raw.id.as_ref().map(|id| id.value.clone()),
        title,
        body,
        labels,
        priority: raw.priority.unwrap_or(defaults.priority),
        steps,
        retry: retry_policy(file, raw.retry.as_ref(), defaults.retry)?,
        timeout: optional_timeout(file, "timeout", &raw.timeout)?.or(defaults.timeout),
        requires_approval: raw.requires_approval,
        merge: raw
            .merge
            .as_ref()
            .map(|m| merge::merge_policy(file, m))
            .transpose()?,
        start_from: raw.from.unwrap_or_default(),
        unique_key,
        tools,
        budget: match &raw.budget {
            None => None,
            Some(budget) => {
                budget
                    .value
                    .check()
                    .map_err(|m| error(file, budget.at, m))?;
                Some(budget.value)
            }
        },
    })
}

fn step(
    file: &str,
    raw: &StepFile,
    at: Position,
    index: usize,
    title: &TaskTitle,
    body: &str,
) -> Result<Step, SpecError> {
    let name = raw
        .name
        .clone()
        .unwrap_or_else(|| format!("step-{}", index + 1));
    check_step_name(&name).map_err(|m| error(file, at, m))?;
    let action = match (&raw.exec, &raw.agent) {
        (Some(_), Some(_)) => {
            return Err(error(
                file,
                at,
                format!("step `{name}` has both `exec` and `agent`; a step does one of them, so split it into two steps"),
            ))
        }
        (None, None) => {
            return Err(error(
                file,
                at,
                format!("step `{name}` has neither `exec` nor `agent`; add `exec: [{{argv: [...]}}]` or `agent: sim`"),
            ))
        }
        (Some(commands), None) => {
            let agent_only = [
                ("prompt", &raw.prompt),
                ("model", &raw.model),
                ("profile", &raw.profile),
            ];
            let misplaced = agent_only
                .iter()
                .find_map(|(key, value)| Some((key, value.as_ref()?)));
            if let Some((key, value)) = misplaced {
                return Err(error(
                    file,
                    value.at,
                    format!("step `{name}` is an `exec` step, and `{key}` belongs to `agent` steps; remove it or make this an `agent` step"),
                ));
            }
            if commands.is_empty() {
                return Err(error(file, at, format!("step `{name}` has an empty `exec` list; add at least one command")));
            }
            let commands = commands
                .iter()
                .map(|c| command(file, c))
                .collect::<Result<Vec<_>, _>>()?;
            StepAction::Exec { commands }
        }
        (None, Some(agent)) => {
            if agent.trim().is_empty() {
                return Err(error(file, at, format!("step `{name}` has an empty `agent`; name one, such as `sim`")));
            }
            let prompt = raw
                .prompt
                .as_ref()
                .map_or_else(|| default_prompt(title, body), |p| p.value.clone());
            StepAction::Agent {
                agent: agent.clone(),
                prompt,
                model: raw.model.as_ref().map(|m| m.value.clone()),
                profile: raw.profile.as_ref().map(|p| p.value.clone()),
            }
        }
    };
    Ok(Step {
        name,
        action,
        timeout: optional_timeout(file, "timeout", &raw.timeout)?,
        network: raw.network.unwrap_or(true),
        plan: false,
    })
}

fn command(file: &str, raw: &CommandFile) -> Result<Command, SpecError> {
    check_argv(&raw.argv.value).map_err(|m| error(file, raw.argv.at, m))?;
    if let Some(Located { value: cwd, at }) = &raw.cwd {
        check_cwd(cwd).map_err(|m| error(file, *at, m))?;
    }
    Ok(Command {
        argv: raw.argv.value.clone(),
        env: raw.env.clone(),
        cwd: raw.cwd.as_ref().map(|c| c.value.clone()),
        timeout: optional_timeout(file, "timeout", &raw.timeout)?,
    })
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn validate_workflow(file: &str, raw: WorkflowFile) -> Result<Workflow, SpecError> {
    let defaults = match &raw.defaults {
        None => Defaults::default(),
        Some(d) => Defaults {
            retry: retry_policy(file, d.retry.as_ref(), RetryPolicy::default())?,
            timeout: optional_timeout(file, "defaults.timeout", &d.timeout)?,
            priority: d.priority.unwrap_or(0),
            labels: d.labels.clone(),
        },
    };
    if raw.tasks.value.is_empty() {
        return Err(error(
            file,
            raw.tasks.at,
            "`tasks` is empty; a workflow needs at least one task",
        ));
    }
    // Ids first, so that `needs` can point forwards as well as backwards.
    let mut ids: HashMap<&str, (usize, Position)> = HashMap::new();
    for (index, task) in raw.tasks.value.iter().enumerate() {
        let Some(id) = &task.value.id else {
            return Err(error(
                file,
                task.at,
                format!(
                    "task {} (`{}`) has no `id`; every task in a workflow needs one so that others can name it in `needs`",
                    index + 1,
                    task.value.title.value
                ),
            ));
        };
        if !valid_id(&id.value) {
            return Err(error(
                file,
                id.at,
                format!("task id `{}` must start with a letter or digit and use only letters, digits, `_`, `.` and `-`", id.value),
            ));
        }
        if let Some((_, first)) = ids.insert(&id.value, (index, id.at)) {
            return Err(error(
                file,
                id.at,
                format!(
                    "task id `{}` is used twice (first at line {}); give each task a unique id",
                    id.value, first.line
                ),
            ));
        }
    }
    let mut needs: Vec<Vec<usize>> = Vec::with_capacity(raw.tasks.value.len());
    for task in &raw.tasks.value {
        let mut deps = Vec::new();
        for need in &task.value.needs {
            match ids.get(need.value.as_str()) {
                Some((index, _)) => {
                    if !deps.contains(index) {
                        deps.push(*index);
                    }
                }
                None => {
                    let mut known: Vec<&str> = ids.keys().copied().collect();
                    known.sort_unstable();
                    return Err(error(
                        file,
                        need.at,
                        format!(
                            "`needs` names `{}`, but no task in this file has that id; the ids are: {}",
                            need.value,
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        needs.push(deps);
    }
    // A child is submitted after its parent: the parent is an ordering edge (not a dependency;
    // the parent waits for the child, not the other way round).
    let mut parents: Vec<Option<usize>> = Vec::with_capacity(raw.tasks.value.len());
    for (index, task) in raw.tasks.value.iter().enumerate() {
        let Some(parent) = &task.value.parent else {
            parents.push(None);
            continue;
        };
        let Some((parent_index, _)) = ids.get(parent.value.as_str()) else {
            return Err(error(
                file,
                parent.at,
                format!(
                    "`parent` names `{}`, but no task in this file has that id",
                    parent.value
                ),
            ));
        };
        if *parent_index == index || needs[index].contains(parent_index) {
            return Err(error(
                file,
                parent.at,
                format!(
                    "task `{}` cannot need or be its own parent `{}`: the parent waits for its children, so it would never run; remove the `needs` entry",
                    task.value.id.as_ref().map_or("", |i| i.value.as_str()),
                    parent.value
                ),
            ));
        }
        parents.push(Some(*parent_index));
    }
    let ordering: Vec<Vec<usize>> = needs
        .iter()
        .zip(&parents)
        .map(|(deps, parent)| deps.iter().copied().chain(*parent).collect())
        .collect();
    let order = dag::topo_order(&ordering).map_err(|cycle| {
        let key = |i: usize| -> String {
            raw.tasks.value[i]
                .value
                .id
                .as_ref()
                .map_or_else(String::new, |id| id.value.clone())
        };
        let mut path: Vec<String> = cycle.nodes.iter().map(|&i| format!("`{}`", key(i))).collect();
        path.push(format!("`{}`", key(cycle.nodes[0])));
        let first = &raw.tasks.value[cycle.nodes[0]];
        let at = first.value.id.as_ref().map_or(first.at, |id| id.at);
        error(
            file,
            at,
            format!(
                "the tasks form a dependency cycle: {} (each is needed by the next); remove one of these `needs`",
                path.join(" -> ")
            ),
        )
    })?;
    // Submit in dependency order so every dependency index points backwards.
    let mut position_of = vec![0usize; order.len()];
    for (position, &index) in order.iter().enumerate() {
        position_of[index] = position;
    }
    let final_merge = match &raw.merge {
        None => None,
        Some(merge) => {
            let keys: Vec<String> = raw
                .tasks
                .value
                .iter()
                .map(|t| {
                    t.value
                        .id
                        .as_ref()
                        .map_or_else(String::new, |id| id.value.clone())
                })
                .collect();
            let index = merge::final_task(file, merge, &keys, &needs)?;
            Some((index, merge::merge_policy(file, merge)?))
        }
    };
    let mut tasks = Vec::with_capacity(order.len());
    for &index in &order {
        let task = &raw.tasks.value[index];
        let mut spec = task_spec(file, &task.value, &defaults)?;
        if let Some((final_index, policy)) = &final_merge {
            if *final_index == index && spec.merge.is_none() {
                spec.merge = Some(policy.clone());
            }
        }
        tasks.push(NewTask {
            spec,
            needs_in_batch: needs[index].iter().map(|&d| position_of[d]).collect(),
            needs_existing: Vec::new(),
            parent: None,
            parent_in_batch: parents[index].map(|p| position_of[p]),
        });
    }
    if let Some(project) = raw.project.as_ref().filter(|p| p.value.trim().is_empty()) {
        return Err(error(
            file,
            project.at,
            "`project` is empty; give the project's directory or remove the key",
        ));
    }
    Ok(Workflow {
        name: raw.name,
        project: raw.project.map(|p| p.value),
        tasks,
    })
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}
