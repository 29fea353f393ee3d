//! Kill a task's live agent session (`orch task kill`, `POST /v1/tasks/{id}/kill`, the
//! dashboard's Kill button): one path for every front end. The sessions themselves (tmux on the
//! daemon's machine) are reached through [`LiveSessions`], which the front end plugs in, so this
//! crate stays free of process handling.

use std::sync::Arc;

use orch_core::{CancelReason, Status, TaskId};

use crate::{App, AppError, Result};

/// The live agent sessions of a home (tmux sessions on its socket).
pub trait LiveSessions: std::fmt::Debug + Send + Sync {
    /// The name of `task`'s session, live or not.
    fn name(&self, task: TaskId) -> String;
    /// Whether `task` has a live session; `Err` says why that cannot be known.
    fn is_live(&self, task: TaskId) -> std::result::Result<bool, String>;
    /// End `task`'s session; one already gone is not an error.
    fn end(&self, task: TaskId) -> std::result::Result<(), String>;
}

impl App {
    /// Kill `task`'s live agent session: refused ([`AppError::NotLive`]) when it has none;
    /// otherwise the task is cancelled first (so no worker retries it), then the session is
    /// ended even if the task had finished meanwhile (the cancel's refusal is returned after).
    /// Returns the task's status.
    pub async fn kill_live_session(
        &self,
        task: TaskId,
        sessions: Arc<dyn LiveSessions>,
        reason: Option<&CancelReason>,
        actor: &str,
    ) -> Result<Status> {
        let looked = {
            let sessions = sessions.clone();
            tokio::task::spawn_blocking(move || sessions.is_live(task)).await
        };
        match looked {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err(AppError::NotLive(task)),
            Ok(Err(e)) => return Err(AppError::Session(e)),
            Err(e) => return Err(AppError::Session(e.to_string())),
        }
        let cancelled = self.cancel(task, reason, actor).await;
        let ended = tokio::task::spawn_blocking(move || sessions.end(task)).await;
        match ended {
            Ok(Ok(())) => cancelled,
            Ok(Err(e)) => Err(AppError::Session(e)),
            Err(e) => Err(AppError::Session(e.to_string())),
        }
    }
}
