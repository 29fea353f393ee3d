//! `merge:` in workflow files: land a done task's change in the project's checkout (the daemon
//! does it, as `orch task merge` would). On a task it lands that task; on the workflow it lands
//! the workflow's final task, the one no other task needs (a workflow with several is refused:
//! the file must say which to land).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{error, Located, SpecError};
use crate::model::{MergeMode, MergePolicy};

/// `merge: {into: main, mode: squash}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeFile {
    /// The branch to land in [default: the branch the project's checkout has checked out].
    #[serde(default)]
    pub into: Option<String>,
    /// `merge` (a merge commit, the default), `squash` (one commit titled with the task's
    /// title) or `rebase` (the task's commits replayed).
    #[serde(default)]
    pub mode: Option<MergeModeFile>,
}

/// How to land, as written in a file.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MergeModeFile {
    /// A merge commit.
    Merge,
    /// One commit with the task's title.
    Squash,
    /// The task's commits replayed.
    Rebase,
}

/// The policy a `merge:` mapping at `at` describes, its branch name checked.
pub(super) fn merge_policy(file: &str, raw: &Located<MergeFile>) -> Result<MergePolicy, SpecError> {
    if let Some(into) = &raw.value.into {
        check_branch_name(into).map_err(|message| error(file, raw.at, message))?;
    }
    Ok(MergePolicy {
        into: raw.value.into.clone(),
        mode: match raw.value.mode {
            None | Some(MergeModeFile::Merge) => MergeMode::Merge,
            Some(MergeModeFile::Squash) => MergeMode::Squash,
            Some(MergeModeFile::Rebase) => MergeMode::Rebase,
        },
    })
}

/// A plausible git branch name (git checks the rest when the merge happens).
fn check_branch_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.starts_with('-')
        || name.starts_with('/')
        || name.ends_with('/')
        || name.ends_with(".lock")
        || name.contains("..")
        || name.contains("@{")
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c));
    if bad {
        Err(format!(
            "`merge.into: {name}` is not a branch name; write one such as `main` or `release/1.2`"
        ))
    } else {
        Ok(())
    }
}

/// The index of the workflow's final task for a workflow-level `merge:`: the one task no other
/// task needs. `keys` are the tasks' ids, `needs` their dependencies as indices.
pub(super) fn final_task(
    file: &str,
    raw: &Located<MergeFile>,
    keys: &[String],
    needs: &[Vec<usize>],
) -> Result<usize, SpecError> {
    let needed: std::collections::HashSet<usize> = needs.iter().flatten().copied().collect();
    let finals: Vec<usize> = (0..keys.len()).filter(|i| !needed.contains(i)).collect();
    match finals.as_slice() {
        [only] => Ok(*only),
        _ => {
            let names: Vec<String> = finals.iter().map(|&i| format!("`{}`", keys[i])).collect();
            Err(error(
                file,
                raw.at,
                format!(
                    "the workflow's `merge:` lands its final task, but {} are all final (no task \
                     needs them); move `merge:` onto the task to land, or add a last task that \
                     needs them",
                    names.join(", ")
                ),
            ))
        }
    }
}
