//! `GET /workflows/{id}`: a workflow's tasks as a graph (layered, left to right, nodes coloured
//! by status and linking to their task pages), recoloured live by the page's script from the
//! `/live?workflow=` stream, and the same tasks as a list.

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use orch_core::WorkflowId;
use orch_store::TaskFilter;

use super::auth::Session;
use super::render::dag::{self, DagNode};
use super::{render, Nav, PageContext, PageError};
use crate::api::ApiState;

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/workflows/{id}", get(workflow_page))
}

#[derive(Template)]
#[template(path = "workflow.html")]
struct WorkflowPage {
    page: PageContext,
    id: i64,
    svg: String,
    /// The tasks as the API shows them (`orch_api::TaskView`).
    tasks: Vec<orch_api::TaskView>,
    counts: Vec<(&'static str, usize)>,
}

async fn workflow_page(
    session: Session,
    State(state): State<ApiState>,
    path: Result<Path<i64>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = path else {
        return PageError::NotFound("a workflow's page is /workflows/<number>".to_owned())
            .into_response();
    };
    match load(&state, id, &session).await {
        Ok(page) => render(&page, &page.page),
        Err(e) => e.into_response(),
    }
}

async fn load(state: &ApiState, id: i64, session: &Session) -> Result<WorkflowPage, PageError> {
    let tasks = state
        .store
        .tasks(&TaskFilter {
            workflow: Some(WorkflowId(id)),
            ..TaskFilter::default()
        })
        .await?;
    if tasks.is_empty() {
        return Err(PageError::NotFound(format!(
            "workflow {id} has no tasks (or does not exist)"
        )));
    }
    let nodes: Vec<DagNode> = tasks
        .iter()
        .map(|t| DagNode {
            id: t.id.0,
            title: t.spec.title.to_string(),
            status: t.status.as_str().to_owned(),
        })
        .collect();
    let edges: Vec<(i64, i64)> = tasks
        .iter()
        .flat_map(|t| t.needs.iter().map(move |n| (n.0, t.id.0)))
        .collect();
    let svg = tokio::task::spawn_blocking(move || dag::render(&nodes, &edges))
        .await
        .map_err(|e| PageError::internal(&e))?;
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for task in &tasks {
        let status = task.status.as_str();
        match counts.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => counts.push((status, 1)),
        }
    }
    Ok(WorkflowPage {
        page: PageContext::new(session, format!("Workflow {id}"), Nav::None),
        id,
        svg,
        tasks: tasks.iter().map(orch_api::TaskView::from).collect(),
        counts,
    })
}
