//! `sim`: a deterministic, offline agent that really edits files and emits the same event
//! stream as the real agents, at zero cost. (Skeleton: see the implementation task.)

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{AgentError, AgentEvent, AgentOutcome, AgentRequest};

/// The simulated agent.
#[derive(Debug, Clone, Default)]
pub struct SimAgent {}

impl SimAgent {
    /// Run one simulated session.
    pub async fn run(
        &self,
        request: &AgentRequest,
        events: mpsc::UnboundedSender<AgentEvent>,
        cancel: CancellationToken,
    ) -> Result<AgentOutcome, AgentError> {
        let _ = (request, events, cancel);
        Err(AgentError::Failed("sim is not implemented yet".into()))
    }
}
