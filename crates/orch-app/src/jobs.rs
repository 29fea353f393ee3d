//! Cron jobs: adding one (its target checked like a submission), and the scheduler's tick,
//! which fires each due slot through the same submission path as every front end. Which slots
//! are due is `orch_core::cron`'s decision; that each fires once is the store's
//! (`Store::fire_job`: one firing row per job and slot, in the transaction of its tasks).

use orch_core::cron::{self, FiringKind, MissedPolicy, Schedule};
use orch_core::{FieldError, NewTask, TaskSpec, Timestamp};
use orch_store::jobs::{Firing, Job, JobTarget, NewJob};
use orch_store::{Op, Submission};

use crate::{App, ProjectDir, Result};

/// A job as a user describes it.
#[derive(Debug, Clone)]
pub struct JobDraft {
    /// Its unique name.
    pub name: String,
    /// The project directory its tasks go to.
    pub project: ProjectDir,
    /// The cron expression (five or six fields).
    pub schedule: String,
    /// The IANA time zone.
    pub timezone: String,
    /// The missed-firing policy.
    pub missed: MissedPolicy,
    /// What each firing submits.
    pub target: JobTarget,
}

/// What one tick fired.
#[derive(Debug, Clone, Default)]
pub struct JobTick {
    /// The firings made now (slots another scheduler fired are not here).
    pub fired: Vec<(String, Firing)>,
    /// Jobs whose missed slots were skipped.
    pub skipped: Vec<String>,
    /// Jobs that could not be ticked, with the reason (the others still were).
    pub failed: Vec<(String, String)>,
}

impl App {
    /// Every cron job, by name, with its next firing after `now` and its newest firing (`orch
    /// job list`, `GET /v1/jobs`, the dashboard's jobs page).
    pub async fn job_views(&self, now: Timestamp) -> Result<Vec<orch_api::JobView>> {
        let mut views = Vec::new();
        for job in self.store().jobs().await? {
            let last = self
                .store()
                .job_firings(job.id, 1)
                .await?
                .into_iter()
                .next();
            views.push(job_view(&job, last.as_ref(), now));
        }
        Ok(views)
    }

    /// Add a cron job. The schedule, time zone, name and target are checked now (a workflow is
    /// parsed, a task checked like a submission), so a broken job is refused here instead of
    /// failing at each slot.
    pub async fn add_job(&self, draft: JobDraft, now: Timestamp) -> Result<Job> {
        let name = draft.name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(FieldError::new(
                "name",
                format!(
                    "`{name}` is not a job name; use letters, digits, `-`, `_` and `.` (e.g. \
                     `nightly-tests`)"
                ),
            )
            .into());
        }
        let schedule = Schedule::parse(&draft.schedule, &draft.timezone)?;
        let tasks = tasks_of(&draft.target, name)?;
        if let Some(check) = &self.check {
            check.check(&draft.project, &tasks)?;
        }
        let project = self
            .store
            .ensure_project(draft.project.as_str(), now)
            .await?;
        let job = NewJob {
            name: name.to_owned(),
            project: project.id,
            schedule: schedule.expression().to_owned(),
            timezone: schedule.zone().to_owned(),
            missed: draft.missed,
            target: draft.target,
        };
        Ok(self.store.add_job(&job, now).await?)
    }

    /// One scheduler pass over every enabled job at calendar time `now`: each due slot fires
    /// once (on time, or one catch-up for missed slots), skipped slots are counted as decided.
    /// A job that fails is reported and the others still run.
    pub async fn tick_jobs(&self, now: Timestamp, actor: &str) -> Result<JobTick> {
        let mut tick = JobTick::default();
        for job in self.store.jobs().await? {
            if !job.enabled {
                continue;
            }
            match self.tick_job(&job, now, actor, &mut tick).await {
                Ok(()) => {}
                Err(e) => tick.failed.push((job.name.clone(), e.to_string())),
            }
        }
        Ok(tick)
    }

    async fn tick_job(
        &self,
        job: &Job,
        now: Timestamp,
        actor: &str,
        tick: &mut JobTick,
    ) -> Result<()> {
        let schedule = Schedule::parse(&job.schedule, &job.timezone)?;
        let since = job.last_slot.unwrap_or(job.created_at);
        let due = cron::due(&schedule, since, now, job.missed);
        for (slot, kind) in [
            (due.catch_up, FiringKind::CatchUp),
            (due.on_time, FiringKind::Scheduled),
        ] {
            if let Some(slot) = slot {
                if let Some(firing) = self.fire(job, slot, kind, actor).await? {
                    tick.fired.push((job.name.clone(), firing));
                }
            }
        }
        if due.skipped {
            tick.skipped.push(job.name.clone());
        }
        if let Some(up_to) = due.decided_up_to {
            self.store.advance_job(job.id, up_to).await?;
        }
        Ok(())
    }

    /// Enable or disable a job (`orch job enable|disable`, the API, the dashboard); slots that
    /// passed while it was disabled are not fired.
    pub async fn set_job_enabled(&self, name: &str, enabled: bool, now: Timestamp) -> Result<Job> {
        Ok(self.store.set_job_enabled(name, enabled, now).await?)
    }

    /// Remove a job (the tasks it submitted stay).
    pub async fn remove_job(&self, name: &str) -> Result<Job> {
        Ok(self.store.remove_job(name).await?)
    }

    /// Fire a job now, by hand (`orch job run`), whatever its schedule; `None` only if a
    /// firing at this very millisecond exists.
    pub async fn run_job(&self, name: &str, now: Timestamp, actor: &str) -> Result<Option<Firing>> {
        let job = self.store.job(name).await?;
        self.fire(&job, now, FiringKind::Manual, actor).await
    }

    /// Submit a job's target for one slot: checked like every submission, secrets redacted,
    /// and stored with the firing row in one transaction. A refused submission (the config
    /// changed since the job was added) is recorded on the firing instead of retried forever.
    async fn fire(
        &self,
        job: &Job,
        slot: Timestamp,
        kind: FiringKind,
        actor: &str,
    ) -> Result<Option<Firing>> {
        let op = Op::now(actor);
        let prepared = self.job_submission(job);
        // A refused submission is recorded on the firing row, which `orch job list` shows.
        let submission = prepared.as_ref().map_err(String::as_str);
        Ok(self
            .store
            .fire_job(job.id, slot, kind, submission, op)
            .await?)
    }

    fn job_submission(&self, job: &Job) -> std::result::Result<Submission, String> {
        let tasks = tasks_of(&job.target, &job.name).map_err(|e| e.to_string())?;
        if let Some(check) = &self.check {
            let project =
                ProjectDir::resolve(&job.project_path, "project").map_err(|e| e.to_string())?;
            check.check(&project, &tasks).map_err(|e| e.to_string())?;
        }
        let workflow = match &job.target {
            JobTarget::Workflow(text) => {
                let parsed =
                    orch_core::spec::parse_workflow(&job.name, text).map_err(|e| e.to_string())?;
                Some((parsed.name, text.clone()))
            }
            JobTarget::Task(_) => None,
        };
        let mut submission = Submission {
            project: job.project,
            workflow,
            tasks,
        };
        submission.redact_secrets(&self.store.secret_values());
        Ok(submission)
    }
}

/// The tasks a target submits.
/// A job as `orch job` (`--json`), the API and the dashboard show it: its next firing after
/// `now` (none while disabled) and its newest firing.
pub fn job_view(job: &Job, last: Option<&Firing>, now: Timestamp) -> orch_api::JobView {
    let schedule = Schedule::parse(&job.schedule, &job.timezone).ok();
    let next = schedule
        .as_ref()
        .filter(|_| job.enabled)
        .and_then(|s| s.next_after(now));
    orch_api::JobView {
        id: job.id,
        name: job.name.clone(),
        schedule: job.schedule.clone(),
        timezone: job.timezone.clone(),
        missed: job.missed.as_str().to_owned(),
        target: job.target.kind().to_owned(),
        project: job.project_path.clone(),
        enabled: job.enabled,
        next_at: next.map(|t| t.0),
        next_local: schedule.as_ref().zip(next).map(|(s, at)| s.local_time(at)),
        last_slot: job.last_slot.map(|t| t.0),
        title: match &job.target {
            JobTarget::Task(spec) => spec.title.as_str().to_owned(),
            JobTarget::Workflow(_) => "(workflow)".to_owned(),
        },
        last_firing: last.map(|f| firing_view(&job.name, f)),
    }
}

/// A firing of the job named `job`, as the API shows it.
pub fn firing_view(job: &str, firing: &Firing) -> orch_api::FiringView {
    orch_api::FiringView {
        job: job.to_owned(),
        slot: firing.slot.0,
        kind: firing.kind.as_str().to_owned(),
        task: firing.task.map(|t| t.0),
        error: firing.error.clone(),
        fired_at: firing.fired_at.0,
    }
}

fn tasks_of(target: &JobTarget, job: &str) -> Result<Vec<NewTask>> {
    Ok(match target {
        JobTarget::Task(spec) => vec![new_task(spec)],
        JobTarget::Workflow(text) => {
            let file = format!("the workflow of job `{job}`");
            orch_core::spec::parse_workflow(&file, text)?.tasks
        }
    })
}

fn new_task(spec: &TaskSpec) -> NewTask {
    NewTask {
        spec: spec.clone(),
        needs_in_batch: Vec::new(),
        needs_existing: Vec::new(),
        parent: None,
        parent_in_batch: None,
    }
}
