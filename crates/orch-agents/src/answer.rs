//! Asking an agent for one answer (the router's classification, the reviewer's verdict) and
//! finding the JSON object in what it says.
//!
//! Only [`Agent::by_name`] and [`Agent::run`] are used, so every adapter (`sim` or a real CLI)
//! can route and review unchanged.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{Agent, AgentEvent, AgentRequest};

/// One question put to an agent, as recorded in `route.json` / `review.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exchange {
    /// 1 for the first question, 2 for the next, ...
    pub attempt: u32,
    /// The rendered prompt.
    pub prompt: String,
    /// The agent's final answer, when the session ended normally.
    pub answer: Option<String>,
    /// Why the answer was not used (a failed session, invalid JSON, a refused value).
    pub error: Option<String>,
    /// The session's events, written to the bundle's `events.jsonl` beside the JSON file.
    #[serde(skip)]
    pub events: Vec<AgentEvent>,
}

/// Run `agent_name` once on `prompt` in `workdir` and return its final answer, with every event
/// it emitted. A failed session, a timeout or a cancellation is `Err` with the reason.
///
/// The router's and the reviewer's agents read text a task's author wrote (its body, its diff),
/// so they are confined like a step's: `sandbox` is the policy to start from, and an enforced
/// one gets `workdir` as readable only and a fresh state directory (its `HOME` and `TMPDIR`) as
/// the one place it may write.
#[allow(clippy::too_many_arguments)] // each is a distinct input of one session
pub async fn ask(
    agent_name: &str,
    agents: &crate::AgentsConfig,
    model: Option<&str>,
    prompt: &str,
    workdir: &Path,
    sandbox: &orch_process::Sandbox,
    timeout: Duration,
    cancel: &CancellationToken,
) -> (Result<String, String>, Vec<AgentEvent>) {
    let agent = match Agent::resolve(agent_name, agents) {
        Ok(agent) => agent,
        Err(e) => return (Err(e.to_string()), Vec::new()),
    };
    let state = match tempfile::Builder::new().prefix("orch-answer-").tempdir() {
        Ok(state) => state,
        Err(e) => return (Err(format!("create a state directory: {e}")), Vec::new()),
    };
    let (sandbox, env) = confine(sandbox, workdir, state.path());
    let request = AgentRequest {
        prompt: prompt.to_owned(),
        model: model.map(str::to_owned),
        workdir: workdir.to_owned(),
        resume_session: None,
        env,
        sandbox,
        ..AgentRequest::default()
    };
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let session_cancel = cancel.child_token();
    let session = agent.run(&request, sender, session_cancel.clone());
    let outcome = tokio::select! {
        outcome = session => outcome.map(|done| done.result_text).map_err(|e| e.to_string()),
        () = tokio::time::sleep(timeout) => {
            session_cancel.cancel();
            Err(format!("no answer within {}s", timeout.as_secs()))
        }
    };
    let mut events = Vec::new();
    while let Ok(event) = receiver.try_recv() {
        events.push(event);
    }
    (outcome, events)
}

/// The confinement of one answer session: `workdir` readable, `state` writable and its home.
fn confine(
    sandbox: &orch_process::Sandbox,
    workdir: &Path,
    state: &Path,
) -> (
    orch_process::Sandbox,
    std::collections::BTreeMap<String, String>,
) {
    let orch_process::Sandbox::Enforced(policy) = sandbox else {
        return (orch_process::Sandbox::Off, Default::default());
    };
    let mut policy = policy.clone();
    policy.read_write.push(state.to_owned());
    policy.read_only.push(workdir.to_owned());
    let state_text = state.display().to_string();
    let env = ["HOME", "TMPDIR"]
        .into_iter()
        .map(|name| (name.to_owned(), state_text.clone()))
        .collect();
    (orch_process::Sandbox::Enforced(policy), env)
}

/// The JSON object in an answer: the whole text, or the part from the first `{` to the last
/// `}` (models like to wrap JSON in prose or a ```json fence).
pub fn json_object(answer: &str) -> Result<serde_json::Value, String> {
    let trimmed = answer.trim();
    let candidate = match (trimmed.find('{'), trimmed.rfind('}')) {
        (Some(start), Some(end)) if start < end => &trimmed[start..=end],
        _ => {
            return Err(format!(
                "the answer has no JSON object: `{}`",
                shorten(trimmed, 200)
            ))
        }
    };
    let value: serde_json::Value = serde_json::from_str(candidate).map_err(|e| {
        format!(
            "the answer is not valid JSON ({e}): `{}`",
            shorten(trimmed, 200)
        )
    })?;
    if !value.is_object() {
        return Err("the answer is JSON but not an object".to_owned());
    }
    Ok(value)
}

/// At most `max` characters of `text`, with `…` when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let kept: String = text.chars().take(max).collect();
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_found_inside_prose_and_fences() {
        let value = json_object("Sure!\n```json\n{\"a\": 1}\n```\n").expect("found");
        assert_eq!(value["a"], 1);
    }

    #[test]
    fn text_without_an_object_is_refused_with_the_text() {
        let error = json_object("I think sim").expect_err("no object");
        assert!(error.contains("no JSON object: `I think sim`"), "{error}");
        let error = json_object("{not json}").expect_err("invalid");
        assert!(error.contains("not valid JSON"), "{error}");
    }

    #[tokio::test]
    async fn a_sim_answer_is_the_text_of_its_answer_directives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (answer, events) = ask(
            "sim",
            &crate::AgentsConfig::default(),
            None,
            "Classify.\n@answer {\"agent\": \"sim\",\n@answer \"complexity\": \"simple\"}",
            dir.path(),
            &orch_process::Sandbox::Off,
            Duration::from_secs(10),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(
            answer.expect("answered"),
            "{\"agent\": \"sim\",\n\"complexity\": \"simple\"}"
        );
        assert!(matches!(events.last(), Some(AgentEvent::Result { .. })));
    }

    #[tokio::test]
    async fn an_unknown_agent_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (answer, _) = ask(
            "nope",
            &crate::AgentsConfig::default(),
            None,
            "x",
            dir.path(),
            &orch_process::Sandbox::Off,
            Duration::from_secs(1),
            &CancellationToken::new(),
        )
        .await;
        assert!(answer
            .expect_err("unknown")
            .contains("unknown agent `nope`"));
    }
}
