//! Info requests between a run and its coordinator: parking the run with the request, and
//! reading the values its task was given (both fenced by the run's token).

use orch_core::{FencingToken, RunId};
use orch_store::{InputValue, NewInfoRequest, Op};

use super::{Coordinator, CoordinatorError};
use crate::run::WorkerSettings;

impl Coordinator {
    /// Park the run: it ends, its task waits in `awaiting_input` for the answer. Returns the
    /// request's id.
    pub async fn request_input(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        request: &NewInfoRequest,
    ) -> Result<i64, CoordinatorError> {
        match self {
            Coordinator::Local(store) => store
                .request_input(run, token, request.clone(), Op::now(worker))
                .await
                .map_err(CoordinatorError::from_store),
            Coordinator::Http(http) => {
                let body = super::http::json(&orch_api::ParkRequest {
                    step: request.step.clone(),
                    ask: request.ask.clone(),
                    expires_at: request.expires_at.map(|t| t.0),
                })?;
                let response = http
                    .post_about_run(worker, run, token, "info-request", body)
                    .await?;
                let created: orch_api::ParkedView = response.json().await.map_err(|e| {
                    CoordinatorError::Refused(format!("read the answer to the info request: {e}"))
                })?;
                Ok(created.id)
            }
        }
    }

    /// The values the run's task was given, secret ones opened (the embedded worker with the
    /// home's key, the daemon for a remote worker).
    pub async fn input_values(
        &self,
        worker: &str,
        run: RunId,
        token: FencingToken,
        settings: &WorkerSettings,
    ) -> Result<Vec<InputValue>, CoordinatorError> {
        match self {
            Coordinator::Local(store) => {
                let values = store
                    .input_values(run, token, Op::now(worker))
                    .await
                    .map_err(CoordinatorError::from_store)?;
                if values.iter().all(|v| !v.secret) {
                    return Ok(values);
                }
                let Some(secret_box) = &settings.secret_box else {
                    return Err(CoordinatorError::Refused(
                        "the task has secret values and this worker has no key to open them (ORCH_SECRET_KEY or <home>/secret.key)".into(),
                    ));
                };
                orch_store::info_requests::open_values(values, secret_box)
                    .map_err(CoordinatorError::from_store)
            }
            Coordinator::Http(http) => {
                let response = http
                    .post_about_run(worker, run, token, "inputs", serde_json::json!({}))
                    .await?;
                let values: orch_api::InputValues = response.json().await.map_err(|e| {
                    CoordinatorError::Refused(format!("read the task's values: {e}"))
                })?;
                Ok(values
                    .values
                    .into_iter()
                    .map(|v| InputValue {
                        step: v.step,
                        key: v.key,
                        secret: v.secret,
                        file: v.file,
                        value: v.value,
                    })
                    .collect())
            }
        }
    }
}
