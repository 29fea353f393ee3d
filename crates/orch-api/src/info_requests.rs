//! Info requests: what a task asks, the answers a human gives, and the worker's fenced side
//! (parking a run with its request, reading the values its task was given).
//!
//! A secret value is never shown again: the views carry `secret: true` and no value. Only the
//! worker holding the run reads the values, opened.

use std::collections::BTreeMap;

use orch_core::info_request::{Ask, AskedKey, Hint, RequestState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An answer to a task's open info request.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// The values by key. Keys the request marks secret are encrypted at rest and never shown
    /// again.
    pub values: BTreeMap<String, String>,
    /// Keys to treat as secret besides those the request marks.
    #[serde(default)]
    pub secret: Vec<String>,
}

impl std::fmt::Debug for AnswerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        f.debug_struct("AnswerRequest")
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// One info request as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InfoRequestView {
    /// Its id.
    pub id: i64,
    /// Its task.
    pub task: i64,
    /// The run that asked.
    pub run: i64,
    /// The step that asked.
    pub step: String,
    /// What it asks for: `{name, secret, optional, file, description}` each.
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<AskedKey>,
    /// The hint it was asked with (a provider's name).
    #[schema(value_type = Option<String>)]
    pub hint: Option<Hint>,
    /// Why, in the asker's words.
    pub reason: Option<String>,
    /// `open`, `answered`, `expired` or `closed`.
    #[schema(value_type = String)]
    pub state: RequestState,
    /// When it was asked (ms since the epoch).
    pub created_at: i64,
    /// When it expires unanswered (ms since the epoch).
    pub expires_at: Option<i64>,
    /// When it was answered, expired or closed (ms since the epoch).
    pub closed_at: Option<i64>,
    /// Who answered (or what closed it).
    pub closed_by: Option<String>,
    /// The answered values (a secret one without its value).
    pub answers: Vec<AnsweredKeyView>,
}

/// One answered key; a secret value is never returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnsweredKeyView {
    /// The key.
    pub key: String,
    /// Whether the value is secret.
    pub secret: bool,
    /// The value, if it is not secret.
    pub value: Option<String>,
}

/// Info requests, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InfoRequestList {
    /// The requests: `{id, task, run, step, keys: [{name, secret, optional, file,
    /// description}], hint, reason, state, created_at, expires_at, closed_at, closed_by,
    /// answers: [{key, secret, value}]}`; a secret answer has no value.
    #[schema(value_type = Vec<Object>)]
    pub requests: Vec<InfoRequestView>,
}

/// The request a worker parks its run with.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParkRequest {
    /// The step that asked.
    pub step: String,
    /// `{keys, hint, reason}` as the step asked.
    #[schema(value_type = Object)]
    pub ask: Ask,
    /// When it expires unanswered (ms since the epoch).
    pub expires_at: Option<i64>,
}

/// The parked run's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ParkedView {
    /// The request's id.
    pub id: i64,
}

/// One value a run's task was given.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct InputValueView {
    /// The step it is for.
    pub step: String,
    /// The key (the environment variable).
    pub key: String,
    /// Whether it is secret.
    pub secret: bool,
    /// Whether the step gets a file holding it rather than the value.
    pub file: bool,
    /// The value (a secret one opened: only the run's holder gets it).
    pub value: String,
}

impl std::fmt::Debug for InputValueView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the value.
        f.debug_struct("InputValueView")
            .field("step", &self.step)
            .field("key", &self.key)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

/// The values a run's task was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InputValues {
    /// `{step, key, secret, file, value}`, secret values opened: only the run's holder gets
    /// them.
    #[schema(value_type = Vec<Object>)]
    pub values: Vec<InputValueView>,
}
