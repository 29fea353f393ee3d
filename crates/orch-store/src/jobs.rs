//! Cron jobs and their firings as stored (`jobs`, `job_firings`): the types both backends
//! return. A firing row is written in the same transaction as the tasks it submits, and its
//! primary key (job, slot) is what makes a slot fire once however many schedulers run.

use orch_core::cron::{FiringKind, MissedPolicy};
use orch_core::{ProjectId, TaskId, TaskSpec, Timestamp};

use crate::StoreError;

/// What a job submits at each firing.
#[derive(Debug, Clone, PartialEq)]
pub enum JobTarget {
    /// One task with this spec.
    Task(Box<TaskSpec>),
    /// The tasks of this workflow file (its YAML text).
    Workflow(String),
}

impl JobTarget {
    /// The stored kind (`task`, `workflow`).
    pub fn kind(&self) -> &'static str {
        match self {
            JobTarget::Task(_) => "task",
            JobTarget::Workflow(_) => "workflow",
        }
    }

    /// The stored text: the spec as JSON, or the workflow's YAML.
    pub(crate) fn source(&self) -> Result<String, StoreError> {
        match self {
            JobTarget::Task(spec) => serde_json::to_string(spec)
                .map_err(|e| StoreError::Corrupt(format!("task spec does not serialize: {e}"))),
            JobTarget::Workflow(text) => Ok(text.clone()),
        }
    }

    /// The target of a stored kind and text.
    pub(crate) fn from_stored(
        kind: &str,
        source: &str,
        job: &str,
    ) -> Result<JobTarget, StoreError> {
        match kind {
            "task" => serde_json::from_str(source)
                .map(JobTarget::Task)
                .map_err(|e| StoreError::Corrupt(format!("the task spec of job `{job}`: {e}"))),
            "workflow" => Ok(JobTarget::Workflow(source.to_owned())),
            other => Err(StoreError::Corrupt(format!(
                "job `{job}` has the unknown target `{other}`"
            ))),
        }
    }

    /// Redact secrets from the spec or the workflow text, in place (like a submission's).
    pub(crate) fn redact(&mut self, literal_values: &[String]) {
        let redactor = orch_core::redact::Redactor::new(literal_values);
        match self {
            JobTarget::Task(spec) => {
                orch_core::redact::redact_spec(spec, &redactor);
            }
            JobTarget::Workflow(text) => {
                *text = redactor.redact_text(text).0;
            }
        }
    }
}

/// A job to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Its unique name.
    pub name: String,
    /// The project its tasks go to.
    pub project: ProjectId,
    /// The cron expression (checked by `orch_core::cron::Schedule::parse`).
    pub schedule: String,
    /// The IANA time zone of the expression.
    pub timezone: String,
    /// What to do with slots missed while no scheduler ran.
    pub missed: MissedPolicy,
    /// What each firing submits.
    pub target: JobTarget,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Its number.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// The project its tasks go to.
    pub project: ProjectId,
    /// That project's directory.
    pub project_path: String,
    /// The cron expression.
    pub schedule: String,
    /// The IANA time zone.
    pub timezone: String,
    /// The missed-firing policy.
    pub missed: MissedPolicy,
    /// What each firing submits.
    pub target: JobTarget,
    /// Whether the scheduler fires it.
    pub enabled: bool,
    /// The newest slot decided (fired or skipped); `None` before the first.
    pub last_slot: Option<Timestamp>,
    /// When it was added.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// One fired slot of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    /// The job.
    pub job: i64,
    /// The slot (for a manual firing, when it was asked for).
    pub slot: Timestamp,
    /// Why it fired.
    pub kind: FiringKind,
    /// The first task it submitted (`None` when the submission was refused).
    pub task: Option<TaskId>,
    /// Why the submission was refused.
    pub error: Option<String>,
    /// When it fired.
    pub fired_at: Timestamp,
}

pub(crate) fn missed_from_stored(text: &str) -> Result<MissedPolicy, StoreError> {
    MissedPolicy::parse(text)
        .map_err(|_| StoreError::Corrupt(format!("unknown missed-firing policy `{text}`")))
}

pub(crate) fn kind_from_stored(text: &str) -> Result<FiringKind, StoreError> {
    FiringKind::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown firing kind `{text}`")))
}

pub(crate) fn no_such_job(name: &str) -> StoreError {
    StoreError::Invalid {
        field: "job".into(),
        reason: format!("there is no job named `{name}`; `orch job list` shows the jobs there are"),
    }
}

pub(crate) fn name_taken(name: &str) -> StoreError {
    StoreError::Invalid {
        field: "name".into(),
        reason: format!(
            "a job named `{name}` exists already; choose another name or `orch job remove {name}` \
             first"
        ),
    }
}
