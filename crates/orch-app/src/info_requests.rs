//! Answering info requests (`orch task answer`, `POST /v1/tasks/{id}/answers`): the values are
//! checked against the task's open request, the secret ones sealed with the home's key, and the
//! task queued again; and handing a run the values of its task, opened.

use orch_core::{FencingToken, FieldError, RunId, Status, TaskId};
use orch_store::secret_box::SecretBox;
use orch_store::{AnswerValue, InputValue, Op};

use crate::{App, Result};

/// One value of an answer, as a front end read it.
#[derive(Clone, PartialEq, Eq)]
pub struct AnswerInput {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// Treat it as secret even if the request does not (`--secret`).
    pub secret: bool,
}

impl std::fmt::Debug for AnswerInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the value.
        f.debug_struct("AnswerInput")
            .field("key", &self.key)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Use `secret_box` to seal and open secret values (info-request answers).
    pub fn with_secret_box(mut self, secret_box: Option<SecretBox>) -> App {
        self.secret_box = secret_box;
        self
    }

    fn secret_box(&self) -> Result<&SecretBox> {
        self.secret_box.as_ref().ok_or_else(|| {
            FieldError::new(
                "secret_key",
                "this orch has no key for secrets (ORCH_SECRET_KEY or <home>/secret.key)",
            )
            .into()
        })
    }

    /// Answer the task's open info request: a value is secret when the request marks its key
    /// secret or the answer says so, and a secret value is sealed before it reaches the store.
    /// The task is queued again; its next run gets the values.
    pub async fn answer_input(
        &self,
        task: TaskId,
        values: Vec<AnswerInput>,
        actor: &str,
    ) -> Result<Status> {
        if values.is_empty() {
            return Err(FieldError::new("values", "give at least one KEY=VALUE").into());
        }
        for value in &values {
            if value.value.len() > orch_core::info_request::MAX_VALUE_BYTES {
                return Err(FieldError::new(
                    value.key.clone(),
                    format!(
                        "the value has {} bytes; at most {} are accepted",
                        value.value.len(),
                        orch_core::info_request::MAX_VALUE_BYTES
                    ),
                )
                .into());
            }
        }
        let requests = self.store.info_requests(task).await?;
        let open = requests
            .iter()
            .rev()
            .find(|r| r.state == orch_core::info_request::RequestState::Open);
        let mut sealed = Vec::with_capacity(values.len());
        for value in values {
            let marked = open.is_some_and(|r| {
                r.keys
                    .iter()
                    .any(|k| k.name == value.key && (k.secret || k.file))
            });
            let secret = value.secret || marked;
            let stored = if secret {
                self.secret_box()?.encrypt(value.value.as_bytes())
            } else {
                value.value
            };
            sealed.push(AnswerValue {
                key: value.key,
                secret,
                value: stored,
            });
        }
        Ok(self
            .store
            .answer_input(task, sealed, Op::now(actor))
            .await?)
    }

    /// The values of the run's task (fenced by the run's token), secret ones opened: for the
    /// worker that holds the run, and only then.
    pub async fn run_input_values(
        &self,
        run: RunId,
        token: FencingToken,
        worker: &str,
    ) -> Result<Vec<InputValue>> {
        let values = self.store.input_values(run, token, Op::now(worker)).await?;
        if values.iter().all(|v| !v.secret) {
            return Ok(values);
        }
        Ok(orch_store::info_requests::open_values(
            values,
            self.secret_box()?,
        )?)
    }
}
