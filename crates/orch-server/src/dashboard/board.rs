//! `GET /`: the board. Tasks newest first, one page at a time (keyset pages: `before=<id>`),
//! filtered by status, project, label, agent, workflow and text, with the count of matching
//! tasks per status. `GET /board/fragment` is the live part alone (counts and rows) for the
//! same query: the script fetches it again when events arrive, so the board follows without a
//! reload and the server stays the only place that renders a task.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use orch_api::TaskView;
use orch_core::{ProjectId, Status, StepAction, Task, TaskId, WorkflowId};
use orch_store::BoardQuery;
use serde::{Deserialize, Serialize};

use super::auth::Session;
use super::{render_with_status, Nav, PageContext, PageError};
use crate::api::ApiState;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(board))
        .route("/board/fragment", get(fragment))
}

/// Tasks on one page of the board.
pub const PAGE_SIZE: u32 = 100;

/// The board's query string, as typed (kept to fill the filter form again).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct BoardParams {
    /// A status name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// A project id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// A label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// An agent name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Text in the title, or a task number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// A workflow id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// Show tasks older than this id (the next page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

fn blank(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn id_param(name: &str, value: &Option<String>, problems: &mut Vec<String>) -> Option<i64> {
    let raw = blank(value)?;
    match raw.trim_start_matches('#').parse::<i64>() {
        Ok(id) if id > 0 => Some(id),
        _ => {
            problems.push(format!("{name}: `{raw}` is not a number; ignored"));
            None
        }
    }
}

impl BoardParams {
    /// The store's query, and what was ignored as wrong (said on the page).
    pub fn query(&self) -> (BoardQuery, Vec<String>) {
        let mut problems = Vec::new();
        let status = blank(&self.status).and_then(|s| match s.parse::<Status>() {
            Ok(status) => Some(status),
            Err(e) => {
                problems.push(format!("status: {e}; ignored"));
                None
            }
        });
        let query = BoardQuery {
            status,
            project: id_param("project", &self.project, &mut problems).map(ProjectId),
            label: blank(&self.label).map(str::to_owned),
            agent: blank(&self.agent).map(str::to_owned),
            text: blank(&self.q).map(str::to_owned),
            workflow: id_param("workflow", &self.workflow, &mut problems).map(WorkflowId),
            before: id_param("before", &self.before, &mut problems).map(TaskId),
            limit: PAGE_SIZE,
        };
        (query, problems)
    }

    /// This query string with some fields replaced, for links (`/?...`).
    fn link(&self, change: impl FnOnce(&mut BoardParams)) -> String {
        let mut params = self.clone();
        change(&mut params);
        let query = serde_urlencoded::to_string(&params).unwrap_or_default();
        if query.is_empty() {
            "/".to_owned()
        } else {
            format!("/?{query}")
        }
    }
}

/// One task's row: the task as the API shows it (`orch_api::TaskView`, the same view
/// `GET /v1/tasks/{id}` returns), with what only the board shows.
#[derive(Debug)]
pub struct BoardCard {
    /// The task, as the API shows it.
    pub task: TaskView,
    /// The agents of its steps (empty: routed, or commands only).
    pub agents: Vec<String>,
    /// Whether it has command steps.
    pub commands: bool,
    /// When its status last changed, as the page shows times.
    pub updated: String,
    /// The actions its status allows, as (path segment, label).
    pub actions: Vec<(&'static str, &'static str)>,
}

/// The actions a task's status allows, as (path segment, button label).
pub fn actions_for(status: Status) -> Vec<(&'static str, &'static str)> {
    let mut actions = Vec::new();
    match status {
        Status::AwaitingApproval => actions.push(("approve", "Approve")),
        Status::Blocked => actions.push(("unblock", "Unblock")),
        Status::Failed | Status::NeedsReview | Status::Cancelled => {
            actions.push(("retry", "Retry"))
        }
        _ => {}
    }
    if !status.is_finished() {
        actions.push(("cancel", "Cancel"));
    }
    actions
}

impl From<&Task> for BoardCard {
    fn from(task: &Task) -> Self {
        let mut agents = Vec::new();
        let mut commands = false;
        for step in &task.spec.steps {
            match &step.action {
                StepAction::Agent { agent, .. } => {
                    if !agents.contains(agent) {
                        agents.push(agent.clone());
                    }
                }
                StepAction::Exec { .. } => commands = true,
            }
        }
        BoardCard {
            task: TaskView::from(task),
            agents,
            commands,
            updated: super::format_time(task.updated_at),
            actions: actions_for(task.status),
        }
    }
}

/// One status's count, with the link that filters by it.
#[derive(Debug)]
pub struct Count {
    /// The status.
    pub status: &'static str,
    /// Matching tasks in it.
    pub n: u64,
    /// The board filtered by it.
    pub link: String,
    /// Whether the board is filtered by it now.
    pub current: bool,
}

/// What the live part of the board shows.
#[derive(Debug)]
pub struct BoardView {
    /// Per status.
    pub counts: Vec<Count>,
    /// All matching tasks.
    pub total: u64,
    /// The board without a status filter.
    pub all_link: String,
    /// Whether the board has no status filter now.
    pub all_current: bool,
    /// The page's tasks.
    pub rows: Vec<BoardCard>,
    /// This page's address: where actions come back to.
    pub here: String,
    /// The next (older) page, if there may be one.
    pub older: Option<String>,
    /// The first page, when this is not it.
    pub newest: Option<String>,
    /// The fragment's address for this query (the script refreshes from it).
    pub fragment: String,
    /// Whether this is the first page (new tasks appear on it).
    pub first_page: bool,
}

async fn view(
    state: &ApiState,
    params: &BoardParams,
) -> Result<(BoardView, Vec<String>), PageError> {
    let (query, problems) = params.query();
    let page = state.store.board(&query).await?;
    let current = query.status.map(Status::as_str);
    let counts: Vec<Count> = Status::ALL
        .iter()
        .map(|s| Count {
            status: s.as_str(),
            n: page.counts.get(s).copied().unwrap_or(0),
            link: params.link(|p| {
                p.status = Some(s.as_str().to_owned());
                p.before = None;
            }),
            current: current == Some(s.as_str()),
        })
        .collect();
    let rows: Vec<BoardCard> = page.tasks.iter().map(BoardCard::from).collect();
    let older = (rows.len() == PAGE_SIZE as usize)
        .then(|| rows.last().map(|r| r.task.id))
        .flatten()
        .map(|last| params.link(|p| p.before = Some(last.to_string())));
    let newest = query.before.map(|_| params.link(|p| p.before = None));
    let here = params.link(|_| {});
    let fragment = {
        let q = serde_urlencoded::to_string(params).unwrap_or_default();
        format!("/board/fragment?{q}")
    };
    Ok((
        BoardView {
            total: page.counts.values().sum(),
            counts,
            all_current: current.is_none(),
            all_link: params.link(|p| {
                p.status = None;
                p.before = None;
            }),
            rows,
            here,
            older,
            newest,
            fragment,
            first_page: query.before.is_none(),
        },
        problems,
    ))
}

/// The filter form's choices.
#[derive(Debug)]
pub struct Filters {
    /// What was typed.
    pub params: BoardParams,
    /// The projects, as (id, name).
    pub projects: Vec<(i64, String)>,
    /// The status names.
    pub statuses: Vec<&'static str>,
    /// The agent names to suggest.
    pub agents: &'static [&'static str],
    /// What in the query was ignored as wrong.
    pub problems: Vec<String>,
}

impl Filters {
    fn value<'a>(&'a self, field: &'a Option<String>) -> &'a str {
        field.as_deref().unwrap_or("")
    }

    /// The text filter as typed.
    pub fn q(&self) -> &str {
        self.value(&self.params.q)
    }

    /// The label filter as typed.
    pub fn label(&self) -> &str {
        self.value(&self.params.label)
    }

    /// The agent filter as typed.
    pub fn agent(&self) -> &str {
        self.value(&self.params.agent)
    }

    /// The workflow filter as typed.
    pub fn workflow(&self) -> &str {
        self.value(&self.params.workflow)
    }

    /// Whether `status` is the status filter.
    pub fn is_status(&self, status: &str) -> bool {
        self.params.status.as_deref() == Some(status)
    }

    /// Whether project `id` is the project filter.
    pub fn is_project(&self, id: &i64) -> bool {
        self.params.project.as_deref() == Some(id.to_string().as_str())
    }
}

#[derive(Template)]
#[template(path = "board.html")]
struct BoardPage {
    page: PageContext,
    filters: Filters,
    view: BoardView,
}

#[derive(Template)]
#[template(path = "board.html", block = "live")]
struct BoardFragment {
    view: BoardView,
}

fn params(
    query: Result<Query<BoardParams>, axum::extract::rejection::QueryRejection>,
) -> BoardParams {
    query.map(|Query(p)| p).unwrap_or_default()
}

/// `GET /`: the board.
async fn board(
    session: Session,
    State(state): State<ApiState>,
    query: Result<Query<BoardParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = params(query);
    let (view, problems) = match view(&state, &params).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let projects = match state.store.projects().await {
        Ok(projects) => projects.into_iter().map(|p| (p.id.0, p.name)).collect(),
        Err(e) => return PageError::from(e).into_response(),
    };
    let board = BoardPage {
        page: PageContext::new(&session, "Board", Nav::Board),
        filters: Filters {
            params,
            projects,
            statuses: Status::ALL.iter().map(|s| s.as_str()).collect(),
            agents: super::actions::AGENTS,
            problems,
        },
        view,
    };
    render_with_status(StatusCode::OK, &board, board.page.flash.is_some())
}

/// `GET /board/fragment`: the counts and rows alone, for the script.
async fn fragment(
    _session: Session,
    State(state): State<ApiState>,
    query: Result<Query<BoardParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = params(query);
    match view(&state, &params).await {
        // No flash: it belongs to the next whole page, not to a refresh.
        Ok((view, _)) => render_with_status(StatusCode::OK, &BoardFragment { view }, false),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_filters_are_ignored_and_said() {
        let params = BoardParams {
            status: Some("bogus".to_owned()),
            project: Some("x".to_owned()),
            before: Some("#12".to_owned()),
            q: Some("  ".to_owned()),
            ..BoardParams::default()
        };
        let (query, problems) = params.query();
        assert_eq!(query.status, None);
        assert_eq!(query.project, None);
        assert_eq!(query.before, Some(TaskId(12)));
        assert_eq!(query.text, None);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn links_keep_the_other_filters() {
        let params = BoardParams {
            label: Some("a&b".to_owned()),
            before: Some("9".to_owned()),
            ..BoardParams::default()
        };
        assert_eq!(params.link(|p| p.before = None), "/?label=a%26b");
        assert_eq!(
            params.link(|p| p.status = Some("done".to_owned())),
            "/?status=done&label=a%26b&before=9"
        );
        assert_eq!(BoardParams::default().link(|_| {}), "/");
    }

    #[test]
    fn actions_follow_the_status() {
        assert_eq!(
            actions_for(Status::AwaitingApproval),
            vec![("approve", "Approve"), ("cancel", "Cancel")]
        );
        assert_eq!(actions_for(Status::Running), vec![("cancel", "Cancel")]);
        assert_eq!(actions_for(Status::Failed), vec![("retry", "Retry")]);
        assert!(actions_for(Status::Done).is_empty());
    }
}
