//! `GET /inbox`: what waits for a human, newest first: tasks awaiting approval (with what they
//! will run, so the approval is informed), tasks that need review, tasks awaiting input. One
//! card each with its actions as big buttons (a task awaiting input with the form that answers
//! it, `governance.rs`); laid out for a phone as well as a desk. The list
//! follows live like the board (`GET /inbox/fragment`).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use orch_core::{Status, StepAction, Task};
use orch_store::TaskFilter;

use super::auth::Session;
use super::{render_with_status, Nav, PageContext, PageError};
use crate::api::ApiState;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/inbox", get(inbox))
        .route("/inbox/fragment", get(fragment))
}

/// The most tasks listed per kind.
const LIMIT: u32 = 200;

/// One task waiting for a human.
#[derive(Debug)]
pub struct Item {
    /// The task as the API shows it (its id, title, status, reason, labels).
    pub task: orch_api::TaskView,
    /// Its body (shown scrollable).
    pub body: String,
    /// What its steps run: `agent sim`, `echo hi`, ...
    pub steps: Vec<String>,
    /// When it got there.
    pub updated: String,
    /// Awaiting input: the keys its open info request asks for (the answer form's fields).
    pub asks: Vec<super::governance::AskField>,
}

impl From<&Task> for Item {
    fn from(task: &Task) -> Self {
        let mut steps = Vec::new();
        for step in &task.spec.steps {
            match &step.action {
                StepAction::Agent { agent, .. } => steps.push(format!("agent {agent}")),
                StepAction::Exec { commands } => {
                    for command in commands {
                        steps.push(shell_words::join(&command.argv));
                    }
                }
            }
        }
        Item {
            task: orch_api::TaskView::from(task),
            body: task.spec.body.chars().take(4000).collect(),
            steps,
            updated: super::format_time(task.updated_at),
            asks: Vec::new(),
        }
    }
}

/// The inbox's sections.
#[derive(Debug)]
pub struct InboxView {
    /// Awaiting approval.
    pub approvals: Vec<Item>,
    /// Needs review.
    pub reviews: Vec<Item>,
    /// Awaiting input.
    pub inputs: Vec<Item>,
}

impl InboxView {
    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.approvals.is_empty() && self.reviews.is_empty() && self.inputs.is_empty()
    }
}

async fn waiting(state: &ApiState, status: Status) -> Result<Vec<Item>, PageError> {
    let tasks = state
        .store
        .tasks(&TaskFilter {
            status: Some(status),
            limit: Some(LIMIT),
            newest_first: true,
            ..TaskFilter::default()
        })
        .await?;
    Ok(tasks.iter().map(Item::from).collect())
}

async fn view(state: &ApiState) -> Result<InboxView, PageError> {
    let mut inputs = waiting(state, Status::AwaitingInput).await?;
    let mut asks = super::governance::open_asks(state).await?;
    for item in &mut inputs {
        item.asks = asks.remove(&item.task.id).unwrap_or_default();
    }
    Ok(InboxView {
        approvals: waiting(state, Status::AwaitingApproval).await?,
        reviews: waiting(state, Status::NeedsReview).await?,
        inputs,
    })
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    page: PageContext,
    view: InboxView,
}

#[derive(Template)]
#[template(path = "inbox.html", block = "live")]
struct InboxFragment {
    page: PageContext,
    view: InboxView,
}

async fn inbox(session: Session, State(state): State<ApiState>) -> Response {
    match view(&state).await {
        Ok(view) => {
            let page = InboxPage {
                page: PageContext::new(&session, "Inbox", Nav::Inbox),
                view,
            };
            render_with_status(StatusCode::OK, &page, page.page.flash.is_some())
        }
        Err(e) => e.into_response(),
    }
}

async fn fragment(session: Session, State(state): State<ApiState>) -> Response {
    match view(&state).await {
        Ok(view) => {
            let mut page = PageContext::new(&session, "Inbox", Nav::Inbox);
            page.flash = None;
            render_with_status(StatusCode::OK, &InboxFragment { page, view }, false)
        }
        Err(e) => e.into_response(),
    }
}
