//! What users give, parsed once into domain types ("parse, don't validate"): a [`TaskDraft`]
//! from any front end (an API body, CLI flags, a webhook) becomes a [`TaskSpec`] or is refused
//! with the field and the reason, and the arguments of task actions become [`CancelReason`],
//! [`RetryDelay`] and [`ReplyMessage`]. Task files (`spec.rs`) use the same checks, with
//! positions.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{Command, Step, StepAction, TaskSpec, TaskTitle};
use crate::retry::RetryPolicy;

/// Bad input: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field, as the front end named it (`title`, `steps[1].exec[0].argv`).
    pub field: String,
    /// What is wrong and what to do.
    pub reason: String,
}

impl FieldError {
    /// `field` is wrong because `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// One command of an exec step, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandDraft {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Working directory relative to the workspace.
    pub cwd: Option<String>,
    /// Kill the command after this long.
    pub timeout: Option<Duration>,
}

/// One step, as given: `exec` or `agent`, not both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepDraft {
    /// Unique within the task; default `step-<n>`.
    pub name: Option<String>,
    /// Commands to run in order.
    pub exec: Option<Vec<CommandDraft>>,
    /// The agent to run.
    pub agent: Option<String>,
    /// The agent's prompt; default the task's body, or its title.
    pub prompt: Option<String>,
    /// Model for the agent.
    pub model: Option<String>,
    /// Agent profile.
    pub profile: Option<String>,
    /// Stop the step after this long.
    pub timeout: Option<Duration>,
    /// Whether the step may reach the network; default yes.
    pub network: Option<bool>,
}

/// A task as a front end received it, before it is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskDraft {
    /// The workflow key, if any.
    pub key: Option<String>,
    /// One-line title.
    pub title: String,
    /// Longer description.
    pub body: String,
    /// Labels.
    pub labels: Vec<String>,
    /// Higher runs first.
    pub priority: i32,
    /// The steps.
    pub steps: Vec<StepDraft>,
    /// Runs the task may have in all; default the retry policy's.
    pub max_attempts: Option<u32>,
    /// The retry policy (its `max_attempts` is replaced by `max_attempts` when that is given).
    pub retry: RetryPolicy,
    /// Stop the whole run after this long.
    pub timeout: Option<Duration>,
    /// Wait for an approval before running.
    pub requires_approval: bool,
    /// A key unique among the project's live tasks (see [`TaskSpec::unique_key`]).
    pub unique_key: Option<String>,
    /// Tools the task needs (see [`crate::tools`]).
    pub tools: Vec<crate::tools::ToolRecipe>,
    /// The most one run may spend on agents (see [`TaskSpec::budget`]).
    pub budget: Option<crate::model::TaskBudget>,
}

/// Check a unique key: 1 to 200 characters, no control characters, no surrounding spaces.
pub fn check_unique_key(key: &str) -> Result<(), String> {
    if key.trim().is_empty() {
        return Err(
            "the unique key is empty; give a short text such as `deploy-prod` or leave it out"
                .into(),
        );
    }
    if key.trim() != key {
        return Err(format!(
            "the unique key `{key}` starts or ends with spaces; remove them"
        ));
    }
    let count = key.chars().count();
    if count > 200 {
        return Err(format!(
            "the unique key has {count} characters; keep it under 200"
        ));
    }
    if key.chars().any(char::is_control) {
        return Err("the unique key contains a control character (a line break, a tab, ...); use printable text".into());
    }
    Ok(())
}

/// Check a task's tool recipes; the error names the recipe's index.
pub fn check_tools(tools: &[crate::tools::ToolRecipe]) -> Result<(), FieldError> {
    for (index, tool) in tools.iter().enumerate() {
        tool.validate()
            .map_err(|reason| FieldError::new(format!("tools[{index}]"), reason))?;
        if tools[..index].iter().any(|t| t.name == tool.name) {
            return Err(FieldError::new(
                format!("tools[{index}]"),
                format!(
                    "tool `{}` is listed twice; merge the two entries",
                    tool.name
                ),
            ));
        }
    }
    Ok(())
}

impl TaskSpec {
    /// Check a draft and build the spec, or name the first field that is wrong.
    pub fn parse(draft: TaskDraft) -> Result<TaskSpec, FieldError> {
        let title =
            TaskTitle::parse(draft.title).map_err(|e| FieldError::new("title", e.to_string()))?;
        let mut retry = draft.retry;
        if let Some(max) = draft.max_attempts {
            check_max_attempts(max).map_err(|reason| FieldError::new("max_attempts", reason))?;
            retry.max_attempts = max;
        }
        if let Some(timeout) = draft.timeout {
            check_timeout("timeout", timeout)
                .map_err(|reason| FieldError::new("timeout", reason))?;
        }
        if let Some(key) = &draft.unique_key {
            check_unique_key(key).map_err(|reason| FieldError::new("unique_key", reason))?;
        }
        check_tools(&draft.tools)?;
        if let Some(budget) = &draft.budget {
            budget
                .check()
                .map_err(|reason| FieldError::new("budget", reason))?;
        }
        let prompt = default_prompt(&title, &draft.body);
        let mut steps: Vec<Step> = Vec::with_capacity(draft.steps.len());
        for (index, step) in draft.steps.into_iter().enumerate() {
            let field = format!("steps[{index}]");
            let step = Step::parse(index, step, &prompt).map_err(|e| FieldError {
                field: format!("{field}{}", e.field),
                reason: e.reason,
            })?;
            if steps.iter().any(|s| s.name == step.name) {
                return Err(FieldError::new(
                    format!("{field}.name"),
                    format!(
                        "step name `{}` is used twice in this task; give each step a unique `name`",
                        step.name
                    ),
                ));
            }
            steps.push(step);
        }
        if steps.is_empty() {
            // A task given only a title and body is agent work (SPEC §4): nothing that does no
            // work may end `done`.
            steps.push(implicit_agent_step(&title, &draft.body));
        }
        Ok(TaskSpec {
            key: draft.key,
            title,
            body: draft.body,
            labels: draft.labels,
            priority: draft.priority,
            steps,
            retry,
            timeout: draft.timeout,
            requires_approval: draft.requires_approval,
            merge: None,
            start_from: crate::model::StartFrom::default(),
            unique_key: draft.unique_key,
            tools: draft.tools,
            budget: draft.budget,
        })
    }
}

impl Step {
    /// Check the step at `index` (fields of the error are relative: `.name`, `.exec[0].argv`).
    pub fn parse(index: usize, draft: StepDraft, default_prompt: &str) -> Result<Step, FieldError> {
        let name = draft.name.unwrap_or_else(|| format!("step-{}", index + 1));
        check_step_name(&name).map_err(|reason| FieldError::new(".name", reason))?;
        if let Some(timeout) = draft.timeout {
            check_timeout("timeout", timeout)
                .map_err(|reason| FieldError::new(".timeout", reason))?;
        }
        let action = match (draft.exec, draft.agent) {
            (Some(commands), None) => {
                if commands.is_empty() {
                    return Err(FieldError::new(
                        ".exec",
                        format!("step `{name}` has an empty `exec` list; add at least one command"),
                    ));
                }
                let mut parsed = Vec::with_capacity(commands.len());
                for (n, command) in commands.into_iter().enumerate() {
                    parsed.push(Command::parse(command).map_err(|e| FieldError {
                        field: format!(".exec[{n}]{}", e.field),
                        reason: e.reason,
                    })?);
                }
                StepAction::Exec { commands: parsed }
            }
            (None, Some(agent)) => {
                if agent.trim().is_empty() {
                    return Err(FieldError::new(
                        ".agent",
                        format!("step `{name}` has an empty `agent`; name one, such as `sim`"),
                    ));
                }
                StepAction::Agent {
                    agent,
                    prompt: draft.prompt.unwrap_or_else(|| default_prompt.to_owned()),
                    model: draft.model,
                    profile: draft.profile,
                }
            }
            (Some(_), Some(_)) => return Err(FieldError::new(
                "",
                format!("step `{name}` has both `exec` and `agent`; a step does one of them, so split it into two steps"),
            )),
            (None, None) => return Err(FieldError::new(
                "",
                format!("step `{name}` has neither `exec` nor `agent`; give one of them"),
            )),
        };
        Ok(Step {
            name,
            action,
            timeout: draft.timeout,
            network: draft.network.unwrap_or(true),
            plan: false,
        })
    }
}

impl Command {
    /// Check one command (fields of the error are relative: `.argv`, `.cwd`).
    pub fn parse(draft: CommandDraft) -> Result<Command, FieldError> {
        check_argv(&draft.argv).map_err(|reason| FieldError::new(".argv", reason))?;
        if let Some(cwd) = &draft.cwd {
            check_cwd(cwd).map_err(|reason| FieldError::new(".cwd", reason))?;
        }
        if let Some(timeout) = draft.timeout {
            check_timeout("timeout", timeout)
                .map_err(|reason| FieldError::new(".timeout", reason))?;
        }
        Ok(Command {
            argv: draft.argv,
            env: draft.env,
            cwd: draft.cwd,
            timeout: draft.timeout,
        })
    }
}

/// The name of the agent step a task given no steps gets.
pub const IMPLICIT_STEP: &str = "agent";

/// The agent of that step until a project's `default_agent` replaces it: routed.
pub const AUTO_AGENT: &str = "auto";

/// The one agent step of a task given only a title and body: agent `auto` (routed), the title
/// and the body as its prompt.
pub fn implicit_agent_step(title: &TaskTitle, body: &str) -> Step {
    Step {
        name: IMPLICIT_STEP.to_owned(),
        action: StepAction::Agent {
            agent: AUTO_AGENT.to_owned(),
            prompt: implicit_prompt(title, body),
            model: None,
            profile: None,
        },
        timeout: None,
        network: true,
        plan: false,
    }
}

/// The implicit step's prompt: the title, then the body after a blank line (when there is one).
pub fn implicit_prompt(title: &TaskTitle, body: &str) -> String {
    if body.trim().is_empty() {
        title.as_str().to_owned()
    } else {
        format!("{}\n\n{}", title.as_str(), body.trim_end())
    }
}

impl TaskSpec {
    /// The implicit agent step of this spec, if its only step is the one [`TaskSpec::parse`]
    /// gave a step-less draft (still routed: agent `auto`, the implicit prompt).
    fn implicit_step_mut(&mut self) -> Option<&mut Step> {
        let prompt_wanted = implicit_prompt(&self.title, &self.body);
        match self.steps.as_mut_slice() {
            [step] if step.name == IMPLICIT_STEP => match &step.action {
                StepAction::Agent {
                    agent,
                    prompt,
                    model: None,
                    profile: None,
                } if agent == AUTO_AGENT && *prompt == prompt_wanted => Some(step),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether the task's only step is the implicit agent step, still routed.
    pub fn has_routed_implicit_step(&self) -> bool {
        self.clone().implicit_step_mut().is_some()
    }

    /// Give the implicit agent step (if this spec has one) the project's default agent instead
    /// of routing it. Returns whether it did. Steps a user wrote are never changed.
    pub fn apply_default_agent(&mut self, default_agent: &str) -> bool {
        let Some(step) = self.implicit_step_mut() else {
            return self.apply_default_agent_to_plan(default_agent);
        };
        if let StepAction::Agent { agent, .. } = &mut step.action {
            *agent = default_agent.to_owned();
        }
        true
    }
}

/// An agent step's prompt when none is given: the body, or the title when the body is empty.
pub fn default_prompt(title: &TaskTitle, body: &str) -> String {
    if body.trim().is_empty() {
        title.as_str().to_owned()
    } else {
        body.to_owned()
    }
}

/// A task needs at least one attempt.
pub fn check_max_attempts(max: u32) -> Result<(), String> {
    if max == 0 {
        return Err(
            "`max_attempts: 0` leaves no attempt to run the task; set it to 1 or more".to_owned(),
        );
    }
    Ok(())
}

/// A timeout must leave time to run: zero would stop every run the moment it starts.
pub fn check_timeout(field: &str, timeout: Duration) -> Result<(), String> {
    if timeout.is_zero() {
        return Err(format!(
            "`{field}: 0s` would stop the run the moment it starts; give a positive duration \
             such as `30m`, or remove `{field}` for no timeout"
        ));
    }
    Ok(())
}

/// A step's name names a directory in the bundle.
pub fn check_step_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || name.starts_with('.')
    {
        return Err(format!("step name `{name}` must be letters, digits, `-`, `_` or `.` (it names a directory in the bundle)"));
    }
    Ok(())
}

/// A command is an argv array with a program first, never a shell string.
pub fn check_argv(argv: &[String]) -> Result<(), String> {
    match argv.first() {
        None => Err("`argv` is empty; give the program and its arguments, such as `[cargo, test]`".to_owned()),
        Some(program) if program.trim().is_empty() => Err("`argv` starts with an empty program name; put the program first, such as `[cargo, test]`".to_owned()),
        Some(program) if program.contains(char::is_whitespace) && argv.len() == 1 => Err(format!(
            "`argv` is one string with spaces (`{program}`); orch runs no shell, so split it into a list: `[{}]`",
            program.split_whitespace().collect::<Vec<_>>().join(", ")
        )),
        Some(_) => Ok(()),
    }
}

/// A command's working directory stays inside the workspace.
pub fn check_cwd(cwd: &str) -> Result<(), String> {
    if std::path::Path::new(cwd).is_absolute() || cwd.split(['/', '\\']).any(|part| part == "..") {
        return Err(format!(
            "`cwd: {cwd}` leaves the workspace; give a path relative to the workspace without `..`"
        ));
    }
    Ok(())
}

/// Why a task is cancelled: trimmed, not empty, at most 4096 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelReason(String);

impl CancelReason {
    /// `None` for no reason (absent or blank).
    pub fn parse(raw: Option<String>) -> Result<Option<CancelReason>, FieldError> {
        let Some(text) = raw.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        if text.len() > 4096 {
            return Err(FieldError::new("reason", "at most 4096 bytes"));
        }
        Ok(Some(CancelReason(text)))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How long a retried task waits: more than zero, at most 30 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryDelay(Duration);

/// The longest delay a retry may ask for.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);

impl RetryDelay {
    /// `None` for no delay (absent or zero).
    pub fn parse(raw: Option<Duration>) -> Result<Option<RetryDelay>, FieldError> {
        match raw {
            Some(delay) if delay > MAX_RETRY_DELAY => {
                Err(FieldError::new("delay_ms", "at most 30 days"))
            }
            Some(delay) if !delay.is_zero() => Ok(Some(RetryDelay(delay))),
            _ => Ok(None),
        }
    }

    /// The delay.
    pub fn get(self) -> Duration {
        self.0
    }
}

/// A follow-up for a finished task's agent: not blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyMessage(String);

impl ReplyMessage {
    /// Refuse a blank message.
    pub fn parse(raw: String) -> Result<ReplyMessage, FieldError> {
        if raw.trim().is_empty() {
            return Err(FieldError::new(
                "message",
                "the reply is empty; say what the agent should do next",
            ));
        }
        Ok(ReplyMessage(raw))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn check(draft: TaskDraft) -> String {
        match TaskSpec::parse(draft) {
            Ok(spec) => format!("ok: {} step(s)", spec.steps.len()),
            Err(e) => format!("{e}"),
        }
    }

    fn exec(argv: &[&str]) -> StepDraft {
        StepDraft {
            exec: Some(vec![CommandDraft {
                argv: argv.iter().map(|s| (*s).to_owned()).collect(),
                ..CommandDraft::default()
            }]),
            ..StepDraft::default()
        }
    }

    #[test]
    fn bad_drafts_are_refused_with_the_field_and_the_reason() {
        let base = || TaskDraft {
            title: "Fix it".into(),
            ..TaskDraft::default()
        };
        let cases = vec![
            TaskDraft {
                title: " ".into(),
                ..base()
            },
            TaskDraft {
                max_attempts: Some(0),
                ..base()
            },
            TaskDraft {
                steps: vec![exec(&[])],
                ..base()
            },
            TaskDraft {
                steps: vec![exec(&["cargo test"])],
                ..base()
            },
            TaskDraft {
                steps: vec![StepDraft {
                    name: Some("../x".into()),
                    ..exec(&["ls"])
                }],
                ..base()
            },
            TaskDraft {
                steps: vec![
                    exec(&["ls"]),
                    StepDraft {
                        name: Some("step-1".into()),
                        ..exec(&["ls"])
                    },
                ],
                ..base()
            },
            TaskDraft {
                steps: vec![StepDraft {
                    agent: Some("sim".into()),
                    ..exec(&["ls"])
                }],
                ..base()
            },
            TaskDraft {
                steps: vec![StepDraft::default()],
                ..base()
            },
            TaskDraft {
                steps: vec![StepDraft {
                    exec: Some(vec![CommandDraft {
                        argv: vec!["ls".into()],
                        cwd: Some("../..".into()),
                        ..CommandDraft::default()
                    }]),
                    ..StepDraft::default()
                }],
                ..base()
            },
            TaskDraft {
                steps: vec![
                    exec(&["ls"]),
                    StepDraft {
                        agent: Some("sim".into()),
                        ..StepDraft::default()
                    },
                ],
                ..base()
            },
        ];
        let out: Vec<String> = cases.into_iter().map(check).collect();
        expect![[r#"
            [
                "title: the title is empty; give the task a short one-line title",
                "max_attempts: `max_attempts: 0` leaves no attempt to run the task; set it to 1 or more",
                "steps[0].exec[0].argv: `argv` is empty; give the program and its arguments, such as `[cargo, test]`",
                "steps[0].exec[0].argv: `argv` is one string with spaces (`cargo test`); orch runs no shell, so split it into a list: `[cargo, test]`",
                "steps[0].name: step name `../x` must be letters, digits, `-`, `_` or `.` (it names a directory in the bundle)",
                "steps[1].name: step name `step-1` is used twice in this task; give each step a unique `name`",
                "steps[0]: step `step-1` has both `exec` and `agent`; a step does one of them, so split it into two steps",
                "steps[0]: step `step-1` has neither `exec` nor `agent`; give one of them",
                "steps[0].exec[0].cwd: `cwd: ../..` leaves the workspace; give a path relative to the workspace without `..`",
                "ok: 2 step(s)",
            ]
        "#]]
        .assert_debug_eq(&out);
    }

    #[test]
    fn an_agent_step_without_a_prompt_gets_the_body_or_else_the_title() {
        let agent = || StepDraft {
            agent: Some("sim".into()),
            ..StepDraft::default()
        };
        let prompt = |body: &str| {
            let spec = TaskSpec::parse(TaskDraft {
                title: "Title".into(),
                body: body.into(),
                steps: vec![agent()],
                ..TaskDraft::default()
            })
            .unwrap();
            match &spec.steps[0].action {
                StepAction::Agent { prompt, .. } => prompt.clone(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(prompt("Do it"), "Do it");
        assert_eq!(prompt("  "), "Title");
    }

    #[test]
    fn a_task_with_only_a_title_and_body_gets_one_routed_agent_step() {
        let spec = TaskSpec::parse(TaskDraft {
            title: "Fix the parser".into(),
            body: "It drops the last line.\n".into(),
            ..TaskDraft::default()
        })
        .unwrap();
        expect![[r#"
            [
                Step {
                    name: "agent",
                    action: Agent {
                        agent: "auto",
                        prompt: "Fix the parser\n\nIt drops the last line.",
                        model: None,
                        profile: None,
                    },
                    timeout: None,
                    network: true,
                    plan: false,
                },
            ]
        "#]]
        .assert_debug_eq(&spec.steps);
        assert!(spec.has_routed_implicit_step());
        let title_only = TaskSpec::parse(TaskDraft {
            title: "Just this".into(),
            ..TaskDraft::default()
        })
        .unwrap();
        assert!(matches!(&title_only.steps[0].action,
            StepAction::Agent { prompt, .. } if prompt == "Just this"));
    }

    #[test]
    fn a_project_default_agent_replaces_only_the_implicit_step() {
        let implicit = || {
            TaskSpec::parse(TaskDraft {
                title: "Work".into(),
                ..TaskDraft::default()
            })
            .unwrap()
        };
        let mut spec = implicit();
        assert!(spec.apply_default_agent("sim"));
        assert!(matches!(&spec.steps[0].action, StepAction::Agent { agent, .. } if agent == "sim"));
        assert!(!spec.has_routed_implicit_step());
        // A step the user wrote, even one that looks alike, keeps its agent.
        let mut written = TaskSpec::parse(TaskDraft {
            title: "Work".into(),
            steps: vec![StepDraft {
                name: Some("agent".into()),
                agent: Some("auto".into()),
                prompt: Some("something else".into()),
                ..StepDraft::default()
            }],
            ..TaskDraft::default()
        })
        .unwrap();
        assert!(!written.apply_default_agent("sim"));
    }

    #[test]
    fn action_arguments_are_parsed_once() {
        assert_eq!(CancelReason::parse(Some("  ".into())), Ok(None));
        assert!(CancelReason::parse(Some("x".repeat(4097))).is_err());
        assert_eq!(RetryDelay::parse(Some(Duration::ZERO)), Ok(None));
        assert!(RetryDelay::parse(Some(MAX_RETRY_DELAY + Duration::from_secs(1))).is_err());
        assert_eq!(
            ReplyMessage::parse(" ".into()).unwrap_err().to_string(),
            "message: the reply is empty; say what the agent should do next"
        );
    }
}
