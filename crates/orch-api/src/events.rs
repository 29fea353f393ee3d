//! The live event stream's payloads (`GET /v1/events`, and `/live` for the dashboard's script).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::views::EventView;

/// The data of a `transition` event: the event as `/v1/tasks/{id}/events` shows it, with its
/// task and the task's workflow. The dashboard's live script reads exactly this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamedEvent {
    /// The task.
    pub task: i64,
    /// The task's workflow, if it came from one.
    pub workflow: Option<i64>,
    /// The event.
    #[serde(flatten)]
    pub event: EventView,
}

/// The data of a `lagged` event: the subscriber fell behind and missed this many events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LaggedEvent {
    /// Events not sent.
    pub missed: u64,
}
