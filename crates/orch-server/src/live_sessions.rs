//! The home's tmux agent sessions as `orch_app::live_sessions::LiveSessions`, for killing a
//! task's live session through the one app action (CLI, API, dashboard).

use std::path::{Path, PathBuf};

use orch_agents::tmux;
use orch_app::live_sessions::LiveSessions;
use orch_core::TaskId;

/// The tmux sessions on the socket of an orch home.
#[derive(Debug, Clone)]
pub struct TmuxSessions {
    socket: PathBuf,
}

impl TmuxSessions {
    /// The sessions of the home `home`.
    pub fn of_home(home: &Path) -> TmuxSessions {
        TmuxSessions {
            socket: tmux::socket(home),
        }
    }
}

impl LiveSessions for TmuxSessions {
    fn name(&self, task: TaskId) -> String {
        tmux::session_name(task.0)
    }

    fn is_live(&self, task: TaskId) -> Result<bool, String> {
        let name = self.name(task);
        let sessions = tmux::list(&self.socket).map_err(|e| e.to_string())?;
        Ok(sessions.iter().any(|s| s.name == name))
    }

    fn end(&self, task: TaskId) -> Result<(), String> {
        match tmux::kill(&self.socket, &self.name(task)) {
            Ok(()) | Err(tmux::TmuxError::NoSession(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}
