//! What a run writes into its bundle as it goes: the log, `state.json`, `context.json`,
//! `job.json` and each step's result.

use super::*;

impl Runner<'_> {
    pub(super) fn log(&mut self, step: Option<&str>, line: &str) {
        let stamped = format!("{} {line}\n", rfc3339(now_ms()));
        if let Err(e) = self.bundle.append("logs.txt", stamped.as_bytes()) {
            tracing::warn!("could not write logs.txt: {e}");
        }
        if let Some(step) = step {
            if let Err(e) = self
                .bundle
                .append(&format!("steps/{step}/logs.txt"), stamped.as_bytes())
            {
                tracing::warn!("could not write steps/{step}/logs.txt: {e}");
            }
        }
    }

    pub(super) fn write_state(&mut self, status: &str) {
        let steps: Vec<_> = self
            .task
            .spec
            .steps
            .iter()
            .map(|step| {
                let done = self.steps.iter().find(|r| r.name == step.name);
                json!({ "name": step.name, "status": done.map_or("pending".to_owned(), |r| status_name(r.status)) })
            })
            .collect();
        let state = json!({
            "task": self.task.id.0, "attempt": self.attempt, "run": self.run_id,
            "status": status, "worker": self.settings.name, "steps": steps, "updated_at": rfc3339(now_ms()),
        });
        if let Err(e) = self.bundle.write_json("state.json", &state) {
            tracing::warn!("could not write state.json: {e}");
        }
    }

    pub(super) fn write_context(&mut self) {
        let steps: Vec<_> = self
            .steps
            .iter()
            .map(|r| {
                json!({
                    "name": r.name, "status": status_name(r.status), "summary": r.summary,
                    "exit_code": r.exit_code, "session_id": r.session_id, "output_tail": r.output_tail,
                })
            })
            .collect();
        let mut context = json!({
            "task": { "id": self.task.id.0, "title": self.task.spec.title.as_str(), "body": self.task.spec.body, "labels": self.task.spec.labels },
            "attempt": self.attempt,
            "steps": steps,
        });
        if !self.children.is_empty() {
            context["children"] = json!(self.children);
        }
        if let Err(e) = self.bundle.write_json("context.json", &context) {
            tracing::warn!("could not write context.json: {e}");
        }
        // Steps read a copy in their scratch area: the bundle is out of their reach.
        let scratch = self.scratch();
        let bytes = serde_json::to_vec_pretty(&context).unwrap_or_default();
        let (redacted, _) = self.bundle.redactor().redact(&bytes);
        let copied = crate::off_async(|| {
            std::fs::create_dir_all(&scratch.root)
                .and_then(|()| std::fs::write(scratch.context(), redacted))
        });
        if let Err(e) = copied {
            tracing::warn!("could not write the scratch copy of context.json: {e}");
        }
    }

    /// `job.json`: the task, the run and, once the worktree is prepared, where it started.
    pub(super) fn write_job(
        &mut self,
        project_dir: &Path,
        start: Option<&crate::workspace::Start>,
    ) -> std::io::Result<()> {
        let mut job = json!({ "task": self.task.id.0, "attempt": self.attempt, "run": self.run_id, "project": project_dir, "spec": self.task.spec });
        if let Some(start) = start {
            job["start"] = json!(start);
        }
        self.bundle.write_json("job.json", &job)
    }

    pub(super) fn write_result(&mut self, relative: &str, result: &RunResult) {
        match serde_json::to_value(result) {
            Ok(value) => {
                if let Err(e) = crate::bundle::validate_result(&value) {
                    tracing::error!("{relative} does not match its schema: {e}");
                }
                if let Err(e) = self.bundle.write_json(relative, &value) {
                    tracing::error!("could not write {relative}: {e}");
                }
            }
            Err(e) => tracing::error!("could not serialize {relative}: {e}"),
        }
    }
}
