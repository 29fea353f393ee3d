//! The web dashboard at `/` on the API listener: server-rendered HTML pages (askama templates,
//! checked at compile time and escaped by default), one stylesheet and one small script (live
//! updates over SSE, keyboard navigation), all embedded in the binary.
//!
//! Layout:
//! - `mod.rs` (this file): the router ([`routes`]), where every page module's routes are merged;
//!   the security headers; the shared page context ([`PageContext`]) every template extends
//!   `base.html` with; HTML errors ([`PageError`]); the embedded assets.
//! - `auth.rs`: sign-in (admin token form, one-time links), sessions in the database, sign-out,
//!   the [`auth::Session`] extractor every page takes and the CSRF-checked [`auth::CsrfForm`]
//!   every action takes.
//! - `board.rs` (tasks by status, filters, pages), `actions.rs` (add, cancel, retry, unblock,
//!   approve, reply, kill; all through `orch-app`), `inbox.rs` (what waits for a human),
//!   `live.rs` (the browser's SSE stream, behind the session).
//!
//! Architecture invariants: every route except the sign-in pages and the static assets takes an
//! [`auth::Session`] (no session: a redirect to `/sign-in`); every state-changing route is a
//! POST taking an [`auth::CsrfForm`] (session, CSRF token, Origin and Sec-Fetch-Site checked);
//! actions call `orch-app`, never the store's writes; templates never mark text `|safe`
//! (everything a task wrote renders as text); no inline script (the CSP forbids it).

pub mod actions;
pub mod auth;
pub mod board;
pub mod fleet;
pub mod governance;
pub mod inbox;
pub mod live;
pub mod render;
pub mod task;
pub mod workflow;

use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Request};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api::ApiState;

/// The dashboard's settings, fixed at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The API serves HTTPS: cookies are `Secure` (and the session cookie `__Host-` prefixed).
    pub tls: bool,
    /// How long a session lasts after sign-in.
    pub session_ttl: Duration,
    /// How long a one-time sign-in link stays usable.
    pub link_ttl: Duration,
}

impl Settings {
    /// The defaults: sessions last 12 hours, sign-in links 10 minutes.
    pub fn new(tls: bool) -> Settings {
        Settings {
            tls,
            session_ttl: Duration::from_secs(12 * 3600),
            link_ttl: Duration::from_secs(10 * 60),
        }
    }
}

/// Every dashboard route. Page modules add theirs here, one `.merge` each.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .merge(auth::routes())
        .merge(board::routes())
        .merge(actions::routes())
        .merge(inbox::routes())
        .merge(live::routes())
        .merge(task::routes())
        .merge(workflow::routes())
        .merge(fleet::routes())
        .merge(governance::routes())
        .route("/assets/{name}", get(asset))
        .layer(axum::middleware::from_fn(security_headers))
}

/// The Content-Security-Policy of every dashboard response: only our own script, styles and
/// connections; no inline script, no plugins, no framing, forms post only to us.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Middleware: the security headers on every dashboard response.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Never to another site (a task's link must not learn our URLs). Not `no-referrer`: under
    // it browsers send `Origin: null` with our own forms, and the origin check needs the real
    // one. The sign-in link's page sets `no-referrer` itself (its URL holds the token).
    headers
        .entry(REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("same-origin"));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The embedded stylesheet and script.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_str!("assets/dashboard.css"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/dashboard.js"),
    ),
];

/// `GET /assets/{name}`: an embedded asset (public: the sign-in page needs the stylesheet).
async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (CONTENT_TYPE, HeaderValue::from_static(content_type)),
                // Revalidated each time: a new binary may ship a new file under the same name.
                (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            *body,
        )
            .into_response(),
        None => PageError::NotFound(format!("no asset named `{name}`")).into_response(),
    }
}

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The board (`/`).
    Board,
    /// The approvals inbox.
    Inbox,
    /// The add-task form.
    New,
    /// Agents (dashview's `fleet.rs`).
    Agents,
    /// Workers (dashview's `fleet.rs`).
    Workers,
    /// Usage (dashview's `fleet.rs`).
    Usage,
    /// Cron jobs (`governance.rs`).
    Jobs,
    /// A page outside the navigation (a task, a workflow).
    None,
}

/// The navigation bar: (link, label, entry). Append pages here.
pub const NAV: &[(&str, &str, Nav)] = &[
    ("/", "Board", Nav::Board),
    ("/inbox", "Inbox", Nav::Inbox),
    ("/new", "Add task", Nav::New),
    ("/agents", "Agents", Nav::Agents),
    ("/workers", "Workers", Nav::Workers),
    ("/usage", "Usage", Nav::Usage),
    ("/jobs", "Jobs", Nav::Jobs),
];

/// A one-time message shown on the next page (the result of an action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// Whether it reports a success (`ok`) or a refusal or failure.
    pub ok: bool,
    /// The message (rendered as text).
    pub message: String,
}

/// What `base.html` needs: every page's template struct has a `page: PageContext` field and
/// `{% extends "base.html" %}`.
#[derive(Debug, Clone)]
pub struct PageContext {
    /// The page's title (in `<title>` and the heading).
    pub title: String,
    /// The signed-in actor's name.
    pub actor: String,
    /// The session's CSRF token, for every form's hidden `csrf` field.
    pub csrf: String,
    /// The active navigation entry.
    pub nav: Nav,
    /// The result of the previous action, if any (shown once).
    pub flash: Option<Flash>,
}

impl PageContext {
    /// A page for `session`.
    pub fn new(session: &auth::Session, title: impl Into<String>, nav: Nav) -> PageContext {
        PageContext {
            title: title.into(),
            actor: session.actor.clone(),
            csrf: session.csrf.clone(),
            nav,
            flash: session.flash.clone(),
        }
    }

    /// The navigation entries with whether each is the current one (for `base.html`).
    pub fn nav_items(&self) -> Vec<(&'static str, &'static str, bool)> {
        NAV.iter()
            .map(|(href, label, nav)| (*href, *label, *nav == self.nav))
            .collect()
    }
}

/// Render a page: the HTML, and the flash cookie cleared once it has been shown.
pub fn render<T: Template>(template: &T, page: &PageContext) -> Response {
    render_with_status(StatusCode::OK, template, page.flash.is_some())
}

/// Render `template` with `status`; `clear_flash`: the flash cookie has been shown.
pub fn render_with_status<T: Template>(
    status: StatusCode,
    template: &T,
    clear_flash: bool,
) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = (
                status,
                [(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                )],
                html,
            )
                .into_response();
            if clear_flash {
                if let Ok(value) = HeaderValue::from_str(&auth::clear_flash_cookie()) {
                    response.headers_mut().append(SET_COOKIE, value);
                }
            }
            response
        }
        Err(e) => PageError::internal(&e).into_response(),
    }
}

/// A page that could not be shown, rendered as HTML.
#[derive(Debug)]
pub enum PageError {
    /// Nothing there (404).
    NotFound(String),
    /// A request refused for what it is: a cross-site post, a wrong CSRF token (403).
    Forbidden(String),
    /// The request could not be read (400).
    BadRequest(String),
    /// Something failed on our side (500); the log has the error under the request id.
    Internal {
        /// Names the log line with the real error.
        request_id: String,
    },
    /// The store is not reachable (503).
    Unavailable(String),
}

impl PageError {
    /// Log `error` once under the request's id and answer 500.
    pub fn internal(error: &dyn std::fmt::Display) -> PageError {
        match crate::api::error::ApiError::internal(error) {
            crate::api::error::ApiError::Internal { request_id } => {
                PageError::Internal { request_id }
            }
            _ => PageError::Internal {
                request_id: String::new(),
            },
        }
    }
}

impl From<orch_store::StoreError> for PageError {
    fn from(error: orch_store::StoreError) -> Self {
        match error {
            orch_store::StoreError::TaskNotFound(_) | orch_store::StoreError::RunNotFound(_) => {
                PageError::NotFound(error.to_string())
            }
            orch_store::StoreError::Unavailable(message) => PageError::Unavailable(message),
            other => PageError::internal(&other),
        }
    }
}

impl From<orch_app::AppError> for PageError {
    fn from(error: orch_app::AppError) -> Self {
        match error {
            orch_app::AppError::Store(e) => e.into(),
            other => PageError::internal(&other),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    heading: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, heading, message) = match &self {
            PageError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m.clone()),
            PageError::Forbidden(m) => (StatusCode::FORBIDDEN, "Refused", m.clone()),
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m.clone()),
            PageError::Internal { request_id } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                format!("Something failed on the server; its log names it under request id {request_id}."),
            ),
            PageError::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                format!("The database does not answer: {m}. Try again shortly."),
            ),
        };
        let page = ErrorPage {
            status: status.as_u16(),
            heading,
            message: &message,
        };
        match page.render() {
            Ok(html) => (
                status,
                [(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                )],
                html,
            )
                .into_response(),
            Err(_) => (status, message).into_response(),
        }
    }
}

/// A time for people, in UTC (so every server says the same): `2026-12-03 07:34:00Z`.
pub fn format_time(at: orch_core::Timestamp) -> String {
    let ms = u64::try_from(at.0).unwrap_or(0);
    let time = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .replacen('T', " ", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(format_time(orch_core::Timestamp(0)), "1970-01-01 00:00:00Z");
        assert_eq!(
            format_time(orch_core::Timestamp(951_782_400_000)),
            "2000-02-29 00:00:00Z"
        );
    }
}
