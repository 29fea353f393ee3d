//! Agent steps of a run: claim-time preflight, one agent session with its events and raw
//! output recorded, the review after the steps, and the single step of a follow-up (`reply`).

use super::*;

impl Runner<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_agent(
        &mut self,
        step: &Step,
        resolved: crate::route::ResolvedStep,
        prompt: &str,
        workspace: &Workspace,
        cancel: CancellationToken,
    ) -> StepReport {
        let clock = Instant::now();
        let started = now_ms();
        let agent = match Agent::resolve(&resolved.agent, &self.config.agents) {
            Ok(agent) => agent,
            Err(e) => {
                let mut report = failed_report(&step.name, e.to_string(), clock);
                report.error = Some(format!("refused: {e}"));
                report.failure = Some(e.class());
                return report;
            }
        };
        let earlier: Vec<_> = self
            .steps
            .iter()
            .map(|r| crate::route::EarlierStep {
                name: &r.name,
                status: status_name(r.status),
                summary: &r.summary,
            })
            .collect();
        let full_prompt = match crate::route::step_prompt(
            &self.prompts,
            prompt,
            &resolved,
            &self.review_feedback,
            &earlier,
        ) {
            Ok(text) => text,
            Err(e) => {
                let mut report = failed_report(&step.name, e.clone(), clock);
                report.error = Some(format!("refused: {e}"));
                return report;
            }
        };
        // The prompt as the agent got it, so a run can be understood (and a test can check
        // that review feedback reached it).
        if let Err(e) = self.bundle.write_bytes(
            &format!("steps/{}/prompt.md", step.name),
            full_prompt.as_bytes(),
        ) {
            tracing::error!(step = %step.name, "could not write the step's prompt.md: {e}");
        }
        let model = resolved.model.clone();
        let path_var = exec::command_path(&ExecPolicy::default());
        let (raw_sender, mut raw_receiver) = tokio::sync::mpsc::unbounded_channel::<RawOutput>();
        let request = AgentRequest {
            prompt: full_prompt,
            model,
            workdir: workspace.path().to_owned(),
            resume_session: self.resume_session.clone(),
            env: self.command_env(workspace, step),
            // Kept across attempts in the task's scratch area (sessions a resume needs).
            state_dir: Some(self.scratch().agents()),
            process_registry: Some(self.settings.home.join("processes")),
            raw_output: Some(raw_sender),
            // Used when the agent's settings say `session = "tmux"`. The relay's files live
            // outside the scratch area: the confined agent must not forge its own exit status.
            live_session: Some(orch_agents::tmux::LiveSession {
                socket: orch_agents::tmux::socket(&self.settings.home),
                name: orch_agents::tmux::session_name(self.task.id.0),
                dir: self
                    .settings
                    .home
                    .join("live")
                    .join(self.task.id.0.to_string())
                    .join(format!("{}-{}", self.run_id, step.name)),
            }),
            sandbox: self.step_sandbox(step, workspace, &[], path_var.as_deref()),
            ..AgentRequest::default()
        };
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<AgentEvent>();
        let step_dir = format!("steps/{}", step.name);
        let events_rel = format!("{step_dir}/events.jsonl");
        // The task's budget stops this session (not the run's cancellation) when passed.
        let session_stop = cancel.child_token();
        let mut budget = super::budget::BudgetWatch::new(
            self.task.spec.budget,
            &self.usage,
            session_stop.clone(),
        );
        let outcome = {
            let session = agent.run(&request, sender, session_stop);
            tokio::pin!(session);
            loop {
                tokio::select! {
                    biased;
                    Some(event) = receiver.recv() => {
                        budget.observe(&event);
                        self.record_event(&step.name, &events_rel, &event);
                    }
                    Some(raw) = raw_receiver.recv() => self.record_raw(&step_dir, raw),
                    result = &mut session => break result,
                }
            }
        };
        // Closes the raw channel, so the drain below ends.
        drop(request);
        while let Ok(event) = receiver.try_recv() {
            budget.observe(&event);
            self.record_event(&step.name, &events_rel, &event);
        }
        while let Ok(raw) = raw_receiver.try_recv() {
            self.record_raw(&step_dir, raw);
        }
        let events_path = self.bundle.path().join(&events_rel);
        let events_bytes = crate::off_async(|| std::fs::read(&events_path)).unwrap_or_default();
        let argv = outcome.as_ref().map(|o| o.argv.clone()).unwrap_or_default();
        self.bundle.record(ManifestEntry::Agent {
            step: step.name.clone(),
            agent: agent.name().to_owned(),
            argv,
            cwd: workspace.path().to_owned(),
            started_at_ms: started,
            ended_at_ms: now_ms(),
            success: outcome.is_ok(),
            events_path: PathBuf::from(&events_rel),
            events_bytes: events_bytes.len() as u64,
            events_sha256: sha256_hex(&events_bytes),
        });
        if let Some(reason) = budget.exceeded() {
            // What the stopped session used counts (daily budgets, `orch usage`).
            self.usage.push(orch_store::UsageRecord {
                step: step.name.clone(),
                agent: agent.name().to_owned(),
                model: outcome.as_ref().ok().and_then(|done| done.model.clone()),
                session_id: outcome
                    .as_ref()
                    .ok()
                    .and_then(|done| done.session_id.clone()),
                input_tokens: budget.input_tokens,
                output_tokens: budget.output_tokens,
                cost_usd: budget.cost_usd,
            });
            let mut report = failed_report(&step.name, reason.to_owned(), clock);
            report.status = ResultStatus::NeedsReview;
            report.summary = format!("agent `{}` was stopped: {reason}", agent.name());
            report.failure = Some(FailureClass::BudgetExceeded);
            report.usage = Some(Usage {
                input_tokens: budget.input_tokens,
                output_tokens: budget.output_tokens,
                cost_usd: budget.cost_usd,
            });
            return report;
        }
        match outcome {
            Ok(done) => {
                self.usage.push(orch_store::UsageRecord {
                    step: step.name.clone(),
                    agent: agent.name().to_owned(),
                    model: done.model.clone(),
                    session_id: done.session_id.clone(),
                    input_tokens: done.input_tokens,
                    output_tokens: done.output_tokens,
                    cost_usd: done.cost_usd,
                });
                StepReport {
                    name: step.name.clone(),
                    status: ResultStatus::Succeeded,
                    summary: done.result_text.clone(),
                    exit_code: None,
                    usage: Some(Usage {
                        input_tokens: done.input_tokens,
                        output_tokens: done.output_tokens,
                        cost_usd: done.cost_usd,
                    }),
                    session_id: done.session_id,
                    output_tail: tail_text(done.result_text.as_bytes(), 2048),
                    duration_ms: 0,
                    error: None,
                    failure: None,
                    reset: None,
                }
            }
            Err(e) => {
                let class = e.class();
                let mut report = failed_report(&step.name, e.to_string(), clock);
                report.summary = format!("agent `{}` failed ({})", agent.name(), class.as_str());
                report.failure = Some(class);
                report.reset = e.reset_at().map(|at| (agent.name().to_owned(), at));
                report
            }
        }
    }

    pub(super) fn record_raw(&mut self, step_dir: &str, raw: RawOutput) {
        let (file, mut line) = match raw {
            RawOutput::Stdout(line) => ("stdout.log", line),
            RawOutput::Stderr(line) => ("stderr.log", line),
        };
        line.push('\n');
        let _ = self
            .bundle
            .append(&format!("{step_dir}/{file}"), line.as_bytes());
    }

    /// Refuse the task at claim time when one of its agents cannot run here (not enabled, not
    /// installed, too old) or is paused by a rate limit, before a workspace is made.
    pub(super) async fn preflight(&mut self) -> Option<Verdict> {
        let path = std::env::var("PATH").ok();
        for step in &self.task.spec.steps {
            let StepAction::Agent { agent, .. } = &step.action else {
                continue;
            };
            if agent == "auto" {
                continue;
            }
            if let Some(until) = self.settings.agent_paused(agent) {
                return Some(Verdict {
                    outcome: Outcome::Failed,
                    reason: format!(
                        "agent `{agent}` is paused by a rate limit; the task waits {} for it",
                        humantime_duration(until)
                    ),
                    interrupted: false,
                    requeue_after: Some((Some(agent.clone()), until)),
                });
            }
            if let Err(e) = Agent::resolve(agent, &self.config.agents) {
                return Some(Verdict {
                    outcome: Outcome::FailedPermanently,
                    reason: format!("step `{}`: {e}", step.name),
                    interrupted: false,
                    requeue_after: None,
                });
            }
            let info =
                orch_agents::preflight::check(agent, &self.config.agents, path.as_deref()).await;
            if let Err(e) = orch_agents::preflight::require_ready(&info) {
                return Some(Verdict {
                    outcome: Outcome::FailedPermanently,
                    reason: format!("step `{}`: {e}", step.name),
                    interrupted: false,
                    requeue_after: None,
                });
            }
        }
        None
    }

    /// Review a run whose steps all succeeded; the verdict replaces the run's.
    pub(super) async fn review(
        &mut self,
        agent: &str,
        workspace: &Workspace,
        cancel: &CancellationToken,
    ) -> Verdict {
        self.log(
            None,
            &format!(
                "review by `{agent}` (round {} of {})",
                self.review_rounds_used + 1,
                self.config.review.max_review_rounds
            ),
        );
        let diff = workspace.diff().await.unwrap_or_else(|e| {
            tracing::warn!("diff for the review failed: {e}");
            Vec::new()
        });
        let steps = self
            .steps
            .iter()
            .map(|r| orch_agents::review::StepSummary {
                name: r.name.clone(),
                status: status_name(r.status),
                summary: r.summary.clone(),
            })
            .collect();
        let feedback = self.review_feedback.clone();
        let run = crate::review::RunForReview {
            task: self.task,
            steps,
            diff: &diff,
            workdir: workspace.path(),
            previous: &feedback,
            rounds_used: self.review_rounds_used,
            sandbox: &self.answer_sandbox(),
        };
        let end =
            crate::review::review_run(agent, self.config, &self.prompts, self.bundle, run, cancel)
                .await;
        self.log(None, &end.reason);
        self.review_result = Some(end.result);
        self.review_record = end.record;
        match end.outcome {
            Some(outcome) => Verdict {
                outcome,
                reason: end.reason,
                interrupted: false,
                requeue_after: None,
            },
            None => {
                self.keep_work = true;
                Verdict {
                    outcome: Outcome::Failed,
                    reason: end.reason,
                    interrupted: false,
                    requeue_after: Some((None, Duration::ZERO)),
                }
            }
        }
    }

    pub(super) fn record_event(&mut self, step: &str, events_rel: &str, event: &AgentEvent) {
        if let Ok(mut line) = serde_json::to_vec(event) {
            line.push(b'\n');
            if let Err(e) = self.bundle.append(events_rel, &line) {
                tracing::warn!(step, "could not write {events_rel}: {e}");
            }
        }
        let text = match event {
            AgentEvent::Message { role, text } => Some(format!("{role}: {text}")),
            AgentEvent::ToolCall { name, input, .. } => Some(format!("tool {name} {input}")),
            AgentEvent::Error { message } => Some(format!("agent error: {message}")),
            AgentEvent::Result { text, is_error } => Some(format!(
                "result{}: {text}",
                if *is_error { " (error)" } else { "" }
            )),
            _ => None,
        };
        if let Some(text) = text {
            self.log(Some(step), &text);
        }
    }
}

/// The one step of a follow-up run: the agent of the session it resumes, the reply as prompt,
/// the model of the step that session came from.
pub(super) fn reply_step(reply: &orch_store::PendingReply, steps: &[Step]) -> Step {
    let original = steps.iter().find(|s| s.name == reply.step);
    let (model, profile) = match original.map(|s| &s.action) {
        Some(StepAction::Agent { model, profile, .. }) => (model.clone(), profile.clone()),
        _ => (None, None),
    };
    Step {
        name: format!("reply-{}", reply.id),
        action: StepAction::Agent {
            agent: reply.agent.clone(),
            prompt: reply.message.clone(),
            model,
            profile,
        },
        timeout: original.and_then(|s| s.timeout),
        network: original.is_none_or(|s| s.network),
        plan: false,
    }
}
