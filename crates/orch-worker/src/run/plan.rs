//! Planner steps on the worker's side (`orch_core::planner`): the step gets `ORCH_PLAN_FILE` (a
//! path in the task's scratch area, out of its worktree); after it succeeds the worker reads the
//! file (a regular file, never through a link, capped), checks the plan, keeps it in the bundle
//! as `plan.json` and creates the children through the coordinator; the run then ends and the
//! task rests `blocked` until they are done. A bad or missing plan fails the step and sends
//! the task to `needs_review`.
//!
//! A task that has children already was planned by an earlier run: its planner step is not run
//! again (whatever its checkpoint says), and a planner step whose children were never created
//! (a crash in between) runs again even if it was checkpointed.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use orch_core::planner::{MAX_PLAN_FILE_BYTES, PLAN_FILE_VAR};

use super::*;

fn plan_file(scratch: &Scratch) -> PathBuf {
    scratch.root.join("plan.json")
}

impl Runner<'_> {
    /// `ORCH_PLAN_FILE` for a planner step (any stale file removed first); nothing for others.
    pub(super) fn plan_env(&self, step: &Step) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        if step.plan {
            let path = plan_file(&self.scratch());
            let _ = std::fs::remove_file(&path);
            env.insert(PLAN_FILE_VAR.to_owned(), path.display().to_string());
        }
        env
    }

    /// The report of a step an earlier attempt did, if one did: a planner step whose children
    /// exist, or a step with a checkpoint (not a planner: its children might be missing).
    pub(super) fn done_before(
        &mut self,
        index: usize,
        step: &Step,
        completed: &BTreeMap<String, String>,
    ) -> Option<StepReport> {
        if step.plan && !self.children.is_empty() {
            let summary = format!(
                "planned by an earlier run ({} child tasks); not run again",
                self.children.len()
            );
            self.log(Some(&step.name), &summary);
            return Some(StepReport {
                summary,
                ..done_earlier(&step.name, "-")
            });
        }
        let checkpoint = completed.get(&step.name).filter(|_| !step.plan)?;
        self.log(
            Some(&step.name),
            &format!(
                "step {} `{}` was done by an earlier attempt (checkpoint {checkpoint}); not run again",
                index + 1,
                step.name
            ),
        );
        Some(done_earlier(&step.name, checkpoint))
    }

    /// After a planner step: carry out its plan. `true`: the children exist and the run ends
    /// here (`verdict` says so); `false`: go on (a failed step, or a bad plan that failed it).
    pub(super) async fn after_plan(
        &mut self,
        step: &Step,
        report: &mut StepReport,
        verdict: &mut Verdict,
    ) -> bool {
        if !step.plan || report.status != ResultStatus::Succeeded {
            return false;
        }
        let path = plan_file(&self.scratch());
        let read = read_plan_file(&path);
        let _ = std::fs::remove_file(&path);
        let plan_label = self.config.plan_label();
        let rules = self.config.plan_rules(&plan_label);
        let checked = read.and_then(|bytes| {
            orch_core::planner::plan_children(self.task.id, &self.task.spec.labels, rules, &bytes)
        });
        let (plan, children) = match checked {
            Ok(checked) => checked,
            Err(why) => {
                let reason = format!(
                    "the planner's plan is not usable: {why} (a planner writes its plan to \
                     ${PLAN_FILE_VAR})"
                );
                self.log(Some(&step.name), &reason);
                report.status = ResultStatus::NeedsReview;
                report.error = Some(reason);
                return false;
            }
        };
        if let Err(e) = self.bundle.write_json("plan.json", &plan) {
            tracing::warn!("could not write plan.json: {e}");
        }
        let count = children.len();
        let created = self
            .coordinator
            .create_children(
                &self.settings.name,
                (self.claim.run.id, self.claim.token, self.settings.lease),
                (self.task.project, self.task.id),
                &plan,
                children,
            )
            .await;
        match created {
            Ok((ids, _)) => {
                let reason = format!(
                    "planned {count} child tasks (from task {}); the task waits for them and \
                     then runs its next step",
                    ids.first().map_or(0, |id| id.0)
                );
                self.log(Some(&step.name), &reason);
                report.summary = format!("planned {count} child tasks");
                *verdict = Verdict {
                    outcome: Outcome::Succeeded,
                    reason,
                    interrupted: false,
                    requeue_after: None,
                };
                self.planned = true;
                true
            }
            Err(e) => {
                let reason = format!("could not create the plan's child tasks: {e}");
                self.log(Some(&step.name), &reason);
                // The daemon refusing the plan (its own check) is not retried blindly.
                report.status = match e {
                    CoordinatorError::Refused(_) => ResultStatus::NeedsReview,
                    _ => ResultStatus::Failed,
                };
                report.error = Some(reason);
                false
            }
        }
    }
}

/// The plan file's bytes: a regular file, never through a link, at most
/// [`MAX_PLAN_FILE_BYTES`] (one more is read, so a longer file is refused by the parser).
fn read_plan_file(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "the planner wrote no plan file".to_owned(),
            _ => format!("the plan file cannot be read ({e}); it must be a regular file"),
        })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("the plan file is not a regular file".to_owned());
    }
    let mut bytes = Vec::new();
    file.take(MAX_PLAN_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}
