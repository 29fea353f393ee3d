//! The daemon's check of submissions against the settings they will run under: the home's
//! `config.toml` must parse (with the project's `.orch.toml`), and every agent a step names
//! must be one orch knows (a built-in, `auto`, or an `[agents.commands.<name>]` of the config).
//! Used by every front end through [`orch_app::App::with_check`].

use std::path::{Path, PathBuf};

use orch_app::{ProjectDir, SubmitCheck};
use orch_core::{FieldError, NewTask, StepAction};
use orch_worker::project::ProjectConfig;

/// The settings of the home `home`.
#[derive(Debug, Clone)]
pub struct ConfigCheck {
    home: PathBuf,
}

impl ConfigCheck {
    /// Check submissions against `<home>/config.toml` and each project's `.orch.toml`.
    pub fn new(home: &Path) -> ConfigCheck {
        ConfigCheck {
            home: home.to_owned(),
        }
    }
}

impl SubmitCheck for ConfigCheck {
    fn approval_policy(
        &self,
        project: &ProjectDir,
    ) -> Result<orch_core::approval::ApprovalPolicy, FieldError> {
        let config = ProjectConfig::load_merged(&self.home, Path::new(project.as_str()))
            .map_err(|e| FieldError::new("config", e.to_string()))?;
        Ok(config.approval)
    }

    fn default_agent(&self, project: &ProjectDir) -> Result<Option<String>, FieldError> {
        let config = ProjectConfig::load_merged(&self.home, Path::new(project.as_str()))
            .map_err(|e| FieldError::new("config", e.to_string()))?;
        Ok(config.default_agent.filter(|agent| agent != "auto"))
    }

    fn check(&self, project: &ProjectDir, tasks: &[NewTask]) -> Result<(), FieldError> {
        let config = ProjectConfig::load_merged(&self.home, Path::new(project.as_str()))
            .map_err(|e| FieldError::new("config", e.to_string()))?;
        for (t, task) in tasks.iter().enumerate() {
            for (s, step) in task.spec.steps.iter().enumerate() {
                let StepAction::Agent { agent, .. } = &step.action else {
                    continue;
                };
                if agent == "auto"
                    || orch_agents::known_agents().contains(&agent.as_str())
                    || config.agents.commands.contains_key(agent)
                {
                    continue;
                }
                let field = if tasks.len() == 1 {
                    format!("steps[{s}].agent")
                } else {
                    format!("tasks[{t}].steps[{s}].agent")
                };
                return Err(FieldError::new(
                    field,
                    format!(
                        "step `{}` of task `{}` names the agent `{agent}`, which orch does not \
                         know; use one of {}, or `auto` to let the router choose, or define it \
                         as [agents.commands.{agent}] in {} or the project's .orch.toml",
                        step.name,
                        task.spec.title,
                        orch_agents::known_agents().join(", "),
                        self.home.join("config.toml").display()
                    ),
                ));
            }
        }
        Ok(())
    }
}
