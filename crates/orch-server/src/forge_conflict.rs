//! The conflict follow-up's preparation on the daemon (issue 12): before a follow-up for a pull
//! request conflicting with its base is recorded, the base branch is fetched from the remote
//! (the push's credential path) and merged into the task's branch in this home's repository
//! (`orch_worker::workspace::base_merge`); the follow-up's prompt then says what was merged and
//! lists the conflicted files with their markers (`orch_core::forge::conflict`). The run starts
//! from the branch's tip, so the worktree has the merge; orch commits what the agent leaves and
//! the forge sync pushes it as a fast-forward of the pull request's head.
//!
//! A merge made before a crash (the branch moved, the follow-up not yet recorded) is found by
//! its trailer: the poller decides on the commit before it ([`last_commit`]) and the merge is
//! reused, never made twice.

use std::path::{Path, PathBuf};

use orch_core::forge::conflict::{merged_base_prompt, BaseMergeFacts};
use orch_core::forge::feedback::PullFacts;
use orch_core::forge::ForgeSettings;
use orch_core::Task;
use orch_forge::{ExposeSecret, Forge, RepoRef};
use orch_store::{Project, Store};
use orch_worker::workspace::base_merge::{before_prepared_merge, merge_base, BaseMergeRequest};
use orch_worker::workspace::push::ForgeToken;

/// The local tip of a done task's branch as the feedback loop should see it: the commit before
/// orch's merge of the base when the tip is one (a merge prepared for a follow-up that a crash
/// kept from being recorded), else the tip.
pub async fn last_commit(
    store: &Store,
    home: &Path,
    project: &Project,
    task: &Task,
) -> Option<String> {
    let (branch, tip) = crate::landing::branch(store, home, task).await?;
    match before_prepared_merge(&PathBuf::from(&project.path), &branch).await {
        Ok(Some(before)) => Some(before),
        Ok(None) => Some(tip),
        Err(e) => {
            tracing::warn!(task = %task.id, "reading the task's branch: {e}");
            Some(tip)
        }
    }
}

/// Merge the pull request's base into the task's branch; the follow-up's prompt.
pub async fn prepare(
    store: &Store,
    home: &Path,
    project: &Project,
    forge: &Forge,
    settings: &ForgeSettings,
    task: &Task,
    pull: &PullFacts,
) -> Result<String, String> {
    let (branch, _) = crate::landing::branch(store, home, task)
        .await
        .ok_or_else(|| format!("task {} has no branch in this home", task.id))?;
    let token = match &settings.auth {
        None => None,
        Some(_) => {
            let repo = RepoRef::parse(&settings.repo.to_string()).map_err(|e| e.to_string())?;
            let secret = forge.git_token(&repo).await.map_err(|e| e.to_string())?;
            Some(ForgeToken::new(secret.expose_secret()))
        }
    };
    let project_dir = PathBuf::from(&project.path);
    let merge = merge_base(&BaseMergeRequest {
        project_dir: &project_dir,
        remote: &settings.remote,
        base_branch: &pull.base_branch,
        branch: &branch,
        task: task.id.0,
        token: token.as_ref(),
    })
    .await
    .map_err(|e| e.to_string())?;
    let facts = BaseMergeFacts {
        base_commit: merge.base_commit,
        merged: merge.merge_commit.is_some(),
        conflicted: merge
            .conflicted
            .into_iter()
            .map(|file| (file.path, file.text))
            .collect(),
    };
    Ok(merged_base_prompt(pull, &facts))
}
