//! Agent profiles: the role, skills, tools and constraints an agent works with on a task.
//!
//! A profile comes from the project's `[profiles.<name>]` (named by a step, a `profile:<name>`
//! label or a routing rule) or from the router's answer, and is rendered into the step prompt by
//! the `step.j2` template.

use serde::{Deserialize, Serialize};

/// One profile. Every field is optional; an empty profile adds nothing to a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// Who the agent is for this task (`backend engineer`, `technical writer`).
    pub role: String,
    /// What it knows.
    pub skills: Vec<String>,
    /// Tools it may use.
    pub tools: Vec<String>,
    /// Rules it must keep.
    pub constraints: Vec<String>,
}

impl Profile {
    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        self.role.trim().is_empty()
            && self.skills.is_empty()
            && self.tools.is_empty()
            && self.constraints.is_empty()
    }

    /// Refuse blank entries, which would render as empty bullet points.
    pub fn validate(&self) -> Result<(), String> {
        for (field, items) in [
            ("skills", &self.skills),
            ("tools", &self.tools),
            ("constraints", &self.constraints),
        ] {
            if items.iter().any(|item| item.trim().is_empty()) {
                return Err(format!("profile `{field}` has an empty entry"));
            }
        }
        Ok(())
    }
}
