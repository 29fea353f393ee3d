//! The per-task budget (`budget: {tokens, cost_usd}`): a run's agent usage is watched as the
//! adapter streams it, and the session is stopped (its process group, through the session's
//! cancellation) as soon as the run's usage passes the budget.

use orch_agents::AgentEvent;
use orch_core::TaskBudget;
use tokio_util::sync::CancellationToken;

/// One agent session under the run's budget.
pub(super) struct BudgetWatch {
    budget: Option<TaskBudget>,
    /// Tokens and cost of the run's earlier sessions.
    before: (u64, f64),
    /// The session's usage so far (cumulative, as adapters report it).
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
    pub(super) cost_usd: f64,
    /// Why the session was stopped, once it was.
    exceeded: Option<String>,
    stop: CancellationToken,
}

impl BudgetWatch {
    /// Watch a session that `stop` ends, after the run's `earlier` sessions.
    pub(super) fn new(
        budget: Option<TaskBudget>,
        earlier: &[orch_store::UsageRecord],
        stop: CancellationToken,
    ) -> BudgetWatch {
        let before = earlier.iter().fold((0u64, 0f64), |(tokens, cost), u| {
            (
                tokens
                    .saturating_add(u.input_tokens)
                    .saturating_add(u.output_tokens),
                cost + u.cost_usd,
            )
        });
        BudgetWatch {
            budget,
            before,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: 0.0,
            exceeded: None,
            stop,
        }
    }

    /// Look at one event of the session; stop the session when its usage passes the budget.
    pub(super) fn observe(&mut self, event: &AgentEvent) {
        let AgentEvent::Usage {
            input_tokens,
            output_tokens,
            cost_usd,
        } = event
        else {
            return;
        };
        self.input_tokens = self.input_tokens.max(*input_tokens);
        self.output_tokens = self.output_tokens.max(*output_tokens);
        if let Some(cost) = cost_usd {
            self.cost_usd = self.cost_usd.max(*cost);
        }
        let (Some(budget), None) = (self.budget, &self.exceeded) else {
            return;
        };
        let tokens = self
            .before
            .0
            .saturating_add(self.input_tokens)
            .saturating_add(self.output_tokens);
        if let Some(reason) = budget.exceeded_by(tokens, self.before.1 + self.cost_usd) {
            self.exceeded = Some(reason);
            self.stop.cancel();
        }
    }

    /// Why the session was stopped for the budget, if it was.
    pub(super) fn exceeded(&self) -> Option<&str> {
        self.exceeded.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, cost: Option<f64>) -> AgentEvent {
        AgentEvent::Usage {
            input_tokens: input,
            output_tokens: output,
            cost_usd: cost,
        }
    }

    #[test]
    fn the_session_is_stopped_once_the_run_passes_its_token_budget() {
        let earlier = vec![orch_store::UsageRecord {
            step: "first".into(),
            agent: "sim".into(),
            model: None,
            session_id: None,
            input_tokens: 60,
            output_tokens: 20,
            cost_usd: 0.0,
        }];
        let stop = CancellationToken::new();
        let budget = TaskBudget {
            tokens: Some(100),
            cost_usd: None,
        };
        let mut watch = BudgetWatch::new(Some(budget), &earlier, stop.clone());
        watch.observe(&usage(10, 5, None));
        assert!(!stop.is_cancelled() && watch.exceeded().is_none());
        watch.observe(&usage(15, 10, None));
        assert!(stop.is_cancelled());
        assert_eq!(
            watch.exceeded(),
            Some("the task's budget of 100 tokens was passed (105 tokens used)")
        );
    }

    #[test]
    fn a_cost_budget_counts_the_reported_cost_and_no_budget_stops_nothing() {
        let stop = CancellationToken::new();
        let budget = TaskBudget {
            tokens: None,
            cost_usd: Some(0.5),
        };
        let mut watch = BudgetWatch::new(Some(budget), &[], stop.clone());
        watch.observe(&usage(1_000_000, 1, Some(0.75)));
        assert!(stop.is_cancelled());
        assert!(watch.exceeded().unwrap().contains("$0.50"));
        let free = CancellationToken::new();
        let mut watch = BudgetWatch::new(None, &[], free.clone());
        watch.observe(&usage(u64::MAX, u64::MAX, Some(1e9)));
        assert!(!free.is_cancelled());
    }
}
