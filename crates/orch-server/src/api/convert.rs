//! Conversions from the store's and the application layer's types to the `orch-api` views,
//! shared by the handlers, the dashboard and the CLI's local (no daemon) path, so every way of
//! seeing a thing shows it with the same fields. (They live here, not in `orch-api`, because
//! `orch-api` depends on `orch-core` only.)

use orch_api::{
    AnsweredKeyView, InfoRequestView, InputValueView, UsageSummaryView, UsageTotalView, UsageView,
};
use orch_store::{AgentUsage, InfoRequest, InputValue, UsageSummary, UsageTotal};

/// One agent session's usage.
pub fn usage(u: AgentUsage) -> UsageView {
    UsageView {
        run: u.run.0,
        step: u.step,
        agent: u.agent,
        model: u.model,
        session_id: u.session_id,
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cost_usd: u.cost_usd,
        day: u.day,
    }
}

fn usage_total(t: UsageTotal) -> UsageTotalView {
    UsageTotalView {
        key: t.key,
        sessions: t.sessions,
        input_tokens: t.input_tokens,
        output_tokens: t.output_tokens,
        cost_usd: t.cost_usd,
    }
}

/// Usage per agent, day and project.
pub fn usage_summary(s: UsageSummary) -> UsageSummaryView {
    UsageSummaryView {
        by_agent: s.by_agent.into_iter().map(usage_total).collect(),
        by_day: s.by_day.into_iter().map(usage_total).collect(),
        by_project: s.by_project.into_iter().map(usage_total).collect(),
    }
}

/// One info request (a secret answer has no value: the store never returns one).
pub fn info_request(r: InfoRequest) -> InfoRequestView {
    InfoRequestView {
        id: r.id,
        task: r.task.0,
        run: r.run.0,
        step: r.step,
        keys: r.keys,
        hint: r.hint,
        reason: r.reason,
        state: r.state,
        created_at: r.created_at.0,
        expires_at: r.expires_at.map(|t| t.0),
        closed_at: r.closed_at.map(|t| t.0),
        closed_by: r.closed_by,
        answers: r
            .answers
            .into_iter()
            .map(|a| AnsweredKeyView {
                key: a.key,
                secret: a.secret,
                value: a.value,
            })
            .collect(),
    }
}

/// Info requests, in the order given.
pub fn info_requests(requests: Vec<InfoRequest>) -> Vec<InfoRequestView> {
    requests.into_iter().map(info_request).collect()
}

/// One value a run's task was given (opened, for the run's holder only).
pub fn input_value(v: InputValue) -> InputValueView {
    InputValueView {
        step: v.step,
        key: v.key,
        secret: v.secret,
        file: v.file,
        value: v.value,
    }
}

/// The store's value of one a remote worker received.
pub fn input_value_from_view(v: InputValueView) -> InputValue {
    InputValue {
        step: v.step,
        key: v.key,
        secret: v.secret,
        file: v.file,
        value: v.value,
    }
}
