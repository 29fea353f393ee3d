//! `@orch` mentions found by polling (issue 12), for machines no webhook reaches: the comments
//! of every issue and pull request linked to a task of the project are read back (with a
//! `since` that moves on every ten minutes, so an unchanged thread is a 304), and each comment mentioning orch from someone with
//! write access (`orch_core::forge::mention`) starts a follow-up run of its task through
//! `orch_app::App::mention`, the webhook's path: one follow-up per comment id, whichever of the
//! two sees it first, the id recorded in the same transaction as the follow-up.
//!
//! A mention on a task that is running (or queued, or waiting for a retry) is not lost: the
//! follow-up cannot start yet, nothing is recorded, and `since` is held back to that comment, so
//! every pass reads it again until its task has finished and the follow-up starts. A webhook
//! delivery of such a mention is answered `deferred` and left to this poller. After a restart
//! the first pass reads every comment again (those already acted on are skipped by id).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use orch_app::{App, AppError, ProjectDir};
use orch_core::forge::mention::{follow_up_message, may_direct};
use orch_core::forge::{marker, ForgeSettings};
use orch_core::{ProjectId, ReplyMessage, TaskId};
use orch_forge::{Comment, Forge, RepoRef};
use orch_store::{Project, StoreError};

/// The actor named in events of what the poller does.
const ACTOR: &str = "forge-poll";

/// How far before the previous pass `since` reaches (clocks of two machines differ).
const MARGIN: Duration = Duration::from_secs(30);

/// How long `since` stays the same before it moves on.
const STEP: Duration = Duration::from_secs(600);

/// Per project, the `since` of its next pass. A `std` mutex: it is held for a lookup or an
/// insert only, never across an await.
fn watermarks() -> &'static Mutex<BTreeMap<ProjectId, SystemTime>> {
    static WATERMARKS: OnceLock<Mutex<BTreeMap<ProjectId, SystemTime>>> = OnceLock::new();
    WATERMARKS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Read the linked threads' comments and start the follow-ups their mentions call for; how
/// many started.
pub async fn poll(
    app: &App,
    project: &Project,
    forge: &Forge,
    settings: &ForgeSettings,
    handle: &str,
) -> Result<u64, String> {
    let pass_started = SystemTime::now();
    let since = watermarks()
        .lock()
        .map_err(|_| "the mention watermarks are poisoned".to_owned())?
        .get(&project.id)
        .copied();
    let repo = RepoRef::parse(&settings.repo.to_string()).map_err(|e| e.to_string())?;
    let dir = ProjectDir::resolve(&project.path, "project").map_err(|e| e.to_string())?;
    let linked = app
        .store()
        .linked_numbers(project.id)
        .await
        .map_err(|e| e.to_string())?;
    // `since` moves on only every [`STEP`]: the same URL pass after pass is a conditional
    // request, which an unchanged thread answers with a 304 that costs no quota.
    let fresh = pass_started.checked_sub(MARGIN).unwrap_or(pass_started);
    let mut next = match since {
        Some(since) if fresh.duration_since(since).unwrap_or_default() < STEP => since,
        _ => fresh,
    };
    let mut started = 0;
    for (task, issue, pull) in linked {
        let threads = [(issue, "issue"), (pull, "pull request")];
        for (number, kind) in threads
            .into_iter()
            .filter_map(|(n, kind)| n.map(|n| (n, kind)))
        {
            let comments = forge
                .list_comments_since(&repo, number, since)
                .await
                .map_err(|e| e.to_string())?;
            for comment in comments {
                match act_on(app, &dir, settings, handle, task, (number, kind), &comment).await {
                    Acted::Started => started += 1,
                    Acted::Nothing => {}
                    Acted::Deferred => {
                        // Read again next pass, until the task can take the follow-up.
                        let at = comment
                            .updated_at
                            .as_deref()
                            .and_then(|t| humantime::parse_rfc3339(t).ok())
                            .map_or(SystemTime::UNIX_EPOCH, |t| {
                                t.checked_sub(Duration::from_secs(1)).unwrap_or(t)
                            });
                        next = next.min(at);
                    }
                }
            }
        }
    }
    watermarks()
        .lock()
        .map_err(|_| "the mention watermarks are poisoned".to_owned())?
        .insert(project.id, next);
    Ok(started)
}

enum Acted {
    Started,
    Nothing,
    Deferred,
}

async fn act_on(
    app: &App,
    dir: &ProjectDir,
    settings: &ForgeSettings,
    handle: &str,
    task: TaskId,
    (number, kind): (u64, &str),
    comment: &Comment,
) -> Acted {
    if !crate::api::webhooks::mentions(&comment.body, handle)
        || comment.body.contains(&marker(task))
    {
        return Acted::Nothing;
    }
    // GitHub always says how the author relates to the repository; without it, nobody vouches.
    let association = comment.author_association.as_deref();
    if association.is_none() || may_direct(association).is_err() {
        tracing::info!(task = %task, comment = comment.id, "a mention by someone without write access is ignored");
        return Acted::Nothing;
    }
    let author = comment
        .user
        .as_ref()
        .map_or("someone", |u| u.login.as_str());
    let Ok(message) = ReplyMessage::parse(follow_up_message(
        author,
        &format!("{kind} {}#{number}", settings.repo),
        &comment.body,
        comment.html_url.as_deref(),
    )) else {
        return Acted::Nothing;
    };
    match app
        .mention(dir, &settings.repo, (number, comment.id), &message, ACTOR)
        .await
    {
        Ok(Some(mentioned)) if mentioned.status.is_some() => {
            tracing::info!(task = %mentioned.task, comment = comment.id, "a mention started a follow-up run");
            Acted::Started
        }
        Ok(_) => Acted::Nothing,
        Err(AppError::Store(StoreError::Transition { .. } | StoreError::Conflict { .. })) => {
            Acted::Deferred
        }
        Err(e) => {
            tracing::warn!(task = %task, comment = comment.id, "a mention's follow-up: {e}");
            Acted::Deferred
        }
    }
}
