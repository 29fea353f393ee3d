//! The JSON views of tasks, runs and events now live in the `orch-api` crate (shared with the
//! CLI, the dashboard and the remote worker); re-exported here for the handlers.

pub use orch_api::views::{time, EventView, RunView, TaskView};
