//! `GET /live`: the event stream for the dashboard's script. The same feed as `/v1/events`
//! (one poller for every subscriber; see `api/events.rs`), behind the session cookie instead of
//! the bearer token, which a browser's `EventSource` cannot send.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::auth::Session;
use crate::api::events::{stream_events, EventsQuery};
use crate::api::ApiState;

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/live", get(live))
}

/// `GET /live?task=&workflow=&status=`: `transition` events as `/v1/events` sends them.
async fn live(
    _session: Session,
    state: State<ApiState>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Response {
    match stream_events(state, query).await {
        Ok(sse) => sse.into_response(),
        Err(e) => e.into_response(),
    }
}
