//! Info requests and their answers (`orch_core::info_request` has the protocol and the rules):
//! the types the store hands out, the row conversion and the check of an answer, shared by
//! both backends.
//!
//! A secret value reaches the store only sealed by [`crate::secret_box`] (`enc:v1:...`): the
//! caller (the application layer) seals, the store refuses a secret in clear (and so does a
//! CHECK constraint), and only the run that needs the values gets them back, still sealed, for
//! its worker (or the daemon serving a remote worker) to open.

use orch_core::info_request::{Ask, AskedKey, Hint, RequestState};
use orch_core::{RunId, TaskId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::rows::parse;
use crate::{Result, StoreError};

/// What a parked run asks for, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewInfoRequest {
    /// The step that asked.
    pub step: String,
    /// The checked request.
    pub ask: Ask,
    /// When it expires unanswered (the worker computes it from the project's
    /// `input_timeout`); `None`: never.
    pub expires_at: Option<Timestamp>,
}

/// One key of a request, with whether it was answered. A secret value is never returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnsweredKey {
    /// The key.
    pub key: String,
    /// Whether the value is secret.
    pub secret: bool,
    /// The value, if it is not secret.
    pub value: Option<String>,
}

/// A stored info request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoRequest {
    /// Its id.
    pub id: i64,
    /// Its task.
    pub task: TaskId,
    /// The run that asked.
    pub run: RunId,
    /// The step that asked.
    pub step: String,
    /// What it asks for.
    pub keys: Vec<AskedKey>,
    /// The hint it was asked with.
    pub hint: Option<Hint>,
    /// Why, in the asker's words.
    pub reason: Option<String>,
    /// Where it is.
    pub state: RequestState,
    /// When it was asked.
    pub created_at: Timestamp,
    /// When it expires unanswered.
    pub expires_at: Option<Timestamp>,
    /// When it was answered, expired or closed.
    pub closed_at: Option<Timestamp>,
    /// Who answered (or what closed it).
    pub closed_by: Option<String>,
    /// The answered values (secret ones without their value).
    pub answers: Vec<AnsweredKey>,
}

/// One value of an answer, as the application layer hands it to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerValue {
    /// The key.
    pub key: String,
    /// Whether it is secret (then `value` is sealed: `enc:v1:...`).
    pub secret: bool,
    /// The value, or its sealed text.
    pub value: String,
}

/// A value a run's step gets, still sealed when secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputValue {
    /// The step it is for.
    pub step: String,
    /// The key (the environment variable).
    pub key: String,
    /// Whether it is secret (then `value` is sealed).
    pub secret: bool,
    /// Whether the step gets a file holding it rather than the value.
    pub file: bool,
    /// The value, or its sealed text.
    pub value: String,
}

/// The columns of `select_info_requests_of_task` / `select_open_info_requests`.
pub(crate) struct RequestRow {
    pub id: i64,
    pub task_id: i64,
    pub run_id: i64,
    pub step: String,
    pub keys: String,
    pub hint: Option<String>,
    pub reason: Option<String>,
    pub state: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub closed_by: Option<String>,
}

/// The columns of `select_info_values_of_task`.
pub(crate) struct ValueRow {
    pub request_id: i64,
    pub step: String,
    pub key: String,
    pub secret: bool,
    pub value: String,
}

pub(crate) fn parse_keys(id: i64, keys: &str) -> Result<Vec<AskedKey>> {
    serde_json::from_str(keys)
        .map_err(|e| StoreError::Corrupt(format!("info request {id} keys: {e}")))
}

impl RequestRow {
    pub(crate) fn into_request(self, values: &[ValueRow]) -> Result<InfoRequest> {
        let keys = parse_keys(self.id, &self.keys)?;
        let hint = match self.hint {
            Some(hint) => Some(parse::<Hint>(&hint)?),
            None => None,
        };
        let answers = values
            .iter()
            .filter(|v| v.request_id == self.id)
            .map(|v| AnsweredKey {
                key: v.key.clone(),
                secret: v.secret,
                value: (!v.secret).then(|| v.value.clone()),
            })
            .collect();
        Ok(InfoRequest {
            id: self.id,
            task: TaskId(self.task_id),
            run: RunId(self.run_id),
            step: self.step,
            keys,
            hint,
            reason: self.reason,
            state: parse(&self.state)?,
            created_at: Timestamp(self.created_at),
            expires_at: self.expires_at.map(Timestamp),
            closed_at: self.closed_at.map(Timestamp),
            closed_by: self.closed_by,
            answers,
        })
    }
}

/// The values the runs of a task get: of its answered requests, the newest answer per step
/// and key. `keys` gives each request's keys (for the `file` mark).
pub(crate) fn input_values(
    values: Vec<ValueRow>,
    keys: &std::collections::BTreeMap<i64, Vec<AskedKey>>,
) -> Vec<InputValue> {
    let mut newest: std::collections::BTreeMap<(String, String), InputValue> =
        std::collections::BTreeMap::new();
    // Oldest request first: a later answer replaces an earlier one.
    for row in values {
        let file = keys
            .get(&row.request_id)
            .and_then(|keys| keys.iter().find(|k| k.name == row.key))
            .is_some_and(|k| k.file);
        newest.insert(
            (row.step.clone(), row.key.clone()),
            InputValue {
                step: row.step,
                key: row.key,
                secret: row.secret,
                file,
                value: row.value,
            },
        );
    }
    newest.into_values().collect()
}

/// Check an answer against the open request: every value answers a key it asks for (once), a
/// key the request marks secret is answered sealed, and every required key is answered.
pub(crate) fn check_answer(request_keys: &[AskedKey], values: &[AnswerValue]) -> Result<()> {
    let invalid = |reason: String| StoreError::Invalid {
        field: "answer".into(),
        reason,
    };
    let asked = orch_core::info_request::key_list(request_keys);
    for (index, value) in values.iter().enumerate() {
        let Some(key) = request_keys.iter().find(|k| k.name == value.key) else {
            return Err(invalid(format!(
                "`{}` is not asked for; the request asks for {asked}",
                value.key
            )));
        };
        if values[..index].iter().any(|v| v.key == value.key) {
            return Err(invalid(format!("`{}` is answered twice", value.key)));
        }
        if (key.secret || value.secret) && !value.value.starts_with("enc:v1:") {
            return Err(invalid(format!(
                "`{}` is secret and reached the store unsealed; nothing was stored",
                value.key
            )));
        }
        if value.value.len() > orch_core::info_request::MAX_VALUE_BYTES * 2 {
            return Err(invalid(format!("the value of `{}` is too long", value.key)));
        }
    }
    let missing: Vec<&str> = request_keys
        .iter()
        .filter(|k| !k.optional && !values.iter().any(|v| v.key == k.name))
        .map(|k| k.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(invalid(format!(
            "no value for {}; every key the request does not mark optional needs one",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// The stored form of a request's keys.
pub(crate) fn keys_json(ask: &Ask) -> Result<String> {
    serde_json::to_string(&ask.keys)
        .map_err(|e| StoreError::Corrupt(format!("info request keys: {e}")))
}

/// Open the sealed values of [`crate::Store::input_values`] with the home's key, for the run
/// that gets them (the embedded worker, or the daemon answering a remote worker).
pub fn open_values(
    values: Vec<InputValue>,
    secret_box: &crate::secret_box::SecretBox,
) -> Result<Vec<InputValue>> {
    values
        .into_iter()
        .map(|mut value| {
            if value.secret {
                let plain = secret_box.decrypt(&value.value).map_err(|e| {
                    StoreError::Corrupt(format!("the secret value of `{}`: {e}", value.key))
                })?;
                value.value = String::from_utf8(plain).map_err(|_| {
                    StoreError::Corrupt(format!("the secret value of `{}` is not UTF-8", value.key))
                })?;
            }
            Ok(value)
        })
        .collect()
}
