//! The literal secrets (orch's own tokens) a store handle redacts from everything submitted,
//! besides the known token formats; shared by a handle's clones, kept in memory only.

use std::sync::{Arc, RwLock};

use crate::{Delivery, Result, StoreError, Submission};

/// The literal secrets of one store handle. A std lock: held to copy the list, never across an
/// await.
#[derive(Debug, Clone, Default)]
pub(crate) struct SecretValues(Arc<RwLock<Vec<String>>>);

impl SecretValues {
    /// Add literal secrets to redact from every spec submitted from now on.
    pub(crate) fn add(&self, values: &[String]) {
        let mut known = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for value in values {
            if !known.contains(value) {
                known.push(value.clone());
            }
        }
    }

    /// The literal secrets given to [`SecretValues::add`].
    pub(crate) fn get(&self) -> Vec<String> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The submission as it may be stored: checked, with every secret redacted. The choke
    /// point: no secret in a spec reaches the database, whoever submits.
    pub(crate) fn prepared(&self, submission: &Submission) -> Result<Submission> {
        submission.check()?;
        let mut submission = submission.clone();
        submission.redact_secrets(&self.get());
        Ok(submission)
    }

    /// [`SecretValues::prepared`] for `submit_once`, which also needs a delivery id and a task.
    pub(crate) fn prepared_once(
        &self,
        deliveries: &[Delivery],
        submission: &Submission,
    ) -> Result<Submission> {
        if deliveries.is_empty() || submission.tasks.is_empty() {
            return Err(StoreError::Invalid {
                field: "delivery".into(),
                reason: "submit_once needs at least one delivery id and one task".into(),
            });
        }
        self.prepared(submission)
    }

    /// A follow-up message with every secret redacted (it is a prompt, like a spec).
    pub(crate) fn redact_text(&self, message: &str) -> String {
        orch_core::redact::Redactor::new(&self.get())
            .redact_text(message)
            .0
    }
}
