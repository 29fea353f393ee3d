//! The web dashboard's sign-in state: sessions and one-time sign-in links, shared by every
//! server on the database (a restart signs nobody out). Only SHA-256 hashes of the secrets are
//! stored; the caller hashes the cookie value or the link's token before asking.

use std::collections::BTreeMap;

use orch_core::{ProjectId, Status, Task, TaskId, Timestamp, WorkflowId};

use crate::Store;

/// Which tasks one page of the dashboard's board shows: newest first, every filter optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoardQuery {
    /// Only this status (the counts ignore it: they show every status).
    pub status: Option<Status>,
    /// Only this project.
    pub project: Option<ProjectId>,
    /// Only tasks with this label.
    pub label: Option<String>,
    /// Only tasks with a step of this agent.
    pub agent: Option<String>,
    /// Only tasks whose title contains this (case-insensitive for ASCII), or whose id it is.
    pub text: Option<String>,
    /// Only tasks of this workflow.
    pub workflow: Option<WorkflowId>,
    /// Only tasks older than this one (the next page after a page ending with it).
    pub before: Option<TaskId>,
    /// At most this many tasks.
    pub limit: u32,
}

/// One page of the board.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardPage {
    /// The tasks, newest first.
    pub tasks: Vec<Task>,
    /// How many tasks match the filters (all but `status` and `before`), per status; statuses
    /// with none are left out.
    pub counts: BTreeMap<Status, u64>,
}

/// A dashboard session or a one-time sign-in link, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardGrant {
    /// The SHA-256 (hex) of the secret the browser holds (cookie value or link token).
    pub token_hash: String,
    /// Who signs in: the name actions are recorded under.
    pub actor: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// Not valid from this instant on.
    pub expires_at: Timestamp,
}

impl Store {
    /// One page of the dashboard's board, and the counts per status under the same filters.
    pub async fn board(&self, query: &BoardQuery) -> crate::Result<BoardPage> {
        match self {
            Store::Sqlite(store) => store.board(query).await,
            Store::Postgres(store) => store.board(query).await,
        }
    }

    /// Store a new session (and forget sessions and links that have expired by its creation).
    pub async fn create_dashboard_session(&self, session: &DashboardGrant) -> crate::Result<()> {
        match self {
            Store::Sqlite(store) => store.create_dashboard_grant(session, false).await,
            Store::Postgres(store) => store.create_dashboard_grant(session, false).await,
        }
    }

    /// Store a new one-time sign-in link (and forget expired sessions and links).
    pub async fn create_sign_in_link(&self, link: &DashboardGrant) -> crate::Result<()> {
        match self {
            Store::Sqlite(store) => store.create_dashboard_grant(link, true).await,
            Store::Postgres(store) => store.create_dashboard_grant(link, true).await,
        }
    }

    /// The session whose token hashes to `token_hash`, if it exists and has not expired at `now`.
    pub async fn dashboard_session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> crate::Result<Option<DashboardGrant>> {
        match self {
            Store::Sqlite(store) => store.dashboard_session(token_hash, now).await,
            Store::Postgres(store) => store.dashboard_session(token_hash, now).await,
        }
    }

    /// End a session (sign-out); false if there was none.
    pub async fn end_dashboard_session(&self, token_hash: &str) -> crate::Result<bool> {
        match self {
            Store::Sqlite(store) => store.end_dashboard_session(token_hash).await,
            Store::Postgres(store) => store.end_dashboard_session(token_hash).await,
        }
    }

    /// Use the sign-in link whose token hashes to `link_hash` and, in the same transaction,
    /// create `session` for the link's actor (the `actor` given in `session` is replaced by the
    /// link's). The link is gone afterwards whatever the outcome (single use). `None`: no such
    /// link, or it had expired at `session.created_at`.
    pub async fn sign_in_with_link(
        &self,
        link_hash: &str,
        session: &DashboardGrant,
    ) -> crate::Result<Option<DashboardGrant>> {
        match self {
            Store::Sqlite(store) => store.sign_in_with_link(link_hash, session).await,
            Store::Postgres(store) => store.sign_in_with_link(link_hash, session).await,
        }
    }
}
