//! Command steps and step confinement: the task's scratch area, the sandbox decided at claim
//! time and applied to each step, the environment of a command step, and running it.

use super::*;

impl Runner<'_> {
    pub(super) fn scratch(&self) -> Scratch {
        Scratch::of(&self.settings.home, self.task.id.0)
    }

    /// Refuse the task at claim time when it needs a sandbox this machine cannot give, before
    /// a workspace is made; under `best_effort`, log what is missing.
    pub(super) fn sandbox_preflight(&mut self) -> Option<Verdict> {
        match self.config.sandbox.decide() {
            Ok(decision) => {
                if let SandboxDecision::Enforce {
                    warning: Some(warning),
                } = &decision
                {
                    tracing::warn!(task = %self.task.id, "{warning}");
                    self.log(None, &format!("warning: {warning}"));
                }
                self.sandbox = decision;
                None
            }
            Err(reason) => Some(Verdict {
                outcome: Outcome::FailedPermanently,
                reason,
                interrupted: false,
                requeue_after: None,
            }),
        }
    }

    /// How the processes of `step` are confined; `binaries` are the programs it starts (their
    /// install directories are made readable when they sit in a hidden directory).
    pub(super) fn step_sandbox(
        &self,
        step: &Step,
        workspace: &Workspace,
        binaries: &[String],
        path_var: Option<&str>,
    ) -> orch_process::Sandbox {
        match self.sandbox {
            SandboxDecision::Off => orch_process::Sandbox::Off,
            SandboxDecision::Enforce { .. } => {
                orch_process::Sandbox::Enforced(crate::sandbox::step_policy(
                    &self.settings.home,
                    &self.config.sandbox,
                    &self.scratch(),
                    workspace.path(),
                    &self.project_dir,
                    binaries,
                    path_var,
                    step.network,
                ))
            }
        }
    }

    /// How the router's and the reviewer's agents are confined (see `answer_policy`).
    pub(super) fn answer_sandbox(&self) -> orch_process::Sandbox {
        match self.sandbox {
            SandboxDecision::Off => orch_process::Sandbox::Off,
            SandboxDecision::Enforce { .. } => orch_process::Sandbox::Enforced(
                crate::sandbox::answer_policy(&self.settings.home, &self.config.sandbox),
            ),
        }
    }

    pub(super) fn command_env(
        &self,
        workspace: &Workspace,
        step: &Step,
    ) -> BTreeMap<String, String> {
        let mut env = self.secrets.clone();
        env.insert("ORCH_TASK_ID".into(), self.task.id.to_string());
        env.insert("ORCH_RUN_ID".into(), self.run_id.to_string());
        env.insert("ORCH_ATTEMPT".into(), self.attempt.to_string());
        env.insert("ORCH_STEP".into(), step.name.clone());
        env.insert(
            "ORCH_WORKSPACE".into(),
            workspace.path().display().to_string(),
        );
        // The task's own HOME, TMPDIR, XDG dirs and context copy (never the daemon user's, never
        // the bundle); `ORCH_SCRATCH` also lets a restarted daemon find the run's processes.
        match self.scratch().prepare() {
            Ok(scratch) => env.extend(scratch),
            Err(e) => tracing::warn!("could not prepare the task's scratch area: {e}"),
        }
        // `ORCH_ASK_FILE` and the values answered for this step (`run/ask.rs`).
        env.extend(self.ask_env(step));
        // `ORCH_PLAN_FILE` for a planner step (`run/plan.rs`).
        env.extend(self.plan_env(step));
        env
    }

    pub(super) async fn run_exec(
        &mut self,
        step: &Step,
        commands: &[orch_core::Command],
        workspace: &Workspace,
        cancel: CancellationToken,
    ) -> StepReport {
        let clock = Instant::now();
        let policy = ExecPolicy {
            allow_shell: self.config.allow_shell,
            env_allowlist: self.config.env_allowlist.clone(),
            output_cap_bytes: self.config.output_cap_bytes,
            kill_grace: self.settings.kill_grace,
            default_timeout: None,
            process_registry: Some(self.settings.home.join("processes")),
            sandbox: orch_process::Sandbox::Off,
        };
        let env = self.command_env(workspace, step);
        let programs: Vec<String> = commands
            .iter()
            .filter_map(|c| c.argv.first().cloned())
            .collect();
        let path_var = exec::command_path(&policy);
        let policy = ExecPolicy {
            sandbox: self.step_sandbox(step, workspace, &programs, path_var.as_deref()),
            ..policy
        };
        let step_dir = self.bundle.path().join("steps").join(&step.name);
        let mut last_code = None;
        let mut tail = String::new();
        for (index, command) in commands.iter().enumerate() {
            let line = shell_words::join(&command.argv);
            // Policy, checked just before this command (an earlier one may have made a link);
            // the sandbox is what enforces.
            if let Err(refused) = exec::validate_command(index, command, workspace.path(), &policy)
            {
                let mut report = failed_report(&step.name, refused.to_string(), clock);
                report.summary = if index == 0 {
                    "refused before anything ran".into()
                } else {
                    format!("command {} of {} refused", index + 1, commands.len())
                };
                report.status = ResultStatus::Failed;
                report.exit_code = None;
                // Marks the failure as permanent for `step_verdict`.
                report.error = Some(format!("refused: {refused}"));
                return report;
            }
            self.log(Some(&step.name), &format!("$ {line}"));
            let out = OutputPaths {
                stdout: step_dir.join(format!("cmd-{}.stdout.log", index + 1)),
                stderr: step_dir.join(format!("cmd-{}.stderr.log", index + 1)),
            };
            let redactor = self.bundle.redactor().clone();
            let record = match exec::run_command(
                command,
                workspace.path(),
                &out,
                &env,
                &redactor,
                &policy,
                cancel.clone(),
            )
            .await
            {
                Ok(record) => record,
                Err(e) => return failed_report(&step.name, e.to_string(), clock),
            };
            self.bundle.note_redactions(&record.redactions);
            // The step's stdout.log / stderr.log hold every command's output in order.
            for (kind, path) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
                let bytes = crate::off_async(|| std::fs::read(path)).unwrap_or_default();
                if !bytes.is_empty() {
                    let mut section = format!("==> $ {line} <==\n").into_bytes();
                    section.extend_from_slice(&bytes);
                    if !section.ends_with(b"\n") {
                        section.push(b'\n');
                    }
                    let _ = self
                        .bundle
                        .append(&format!("steps/{}/{kind}.log", step.name), &section);
                }
                if kind == "stdout" {
                    tail = tail_text(&bytes, 2048);
                }
            }
            let exit = record.exit.clone();
            last_code = exit.code;
            self.bundle.record(ManifestEntry::Command {
                step: step.name.clone(),
                record,
            });
            self.log(Some(&step.name), &exit_text(&exit));
            if !exit.success() {
                let mut report =
                    failed_report(&step.name, format!("`{line}` {}", exit_text(&exit)), clock);
                report.exit_code = exit.code;
                report.output_tail = tail;
                report.summary = format!("command {} of {} failed", index + 1, commands.len());
                return report;
            }
        }
        StepReport {
            name: step.name.clone(),
            status: ResultStatus::Succeeded,
            summary: format!("{} command(s) succeeded", commands.len()),
            exit_code: last_code,
            usage: None,
            session_id: None,
            output_tail: tail,
            duration_ms: 0,
            error: None,
            failure: None,
            reset: None,
        }
    }
}
