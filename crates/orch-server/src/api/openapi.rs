//! The OpenAPI document, generated from the handlers and their types, served at `/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{error, events, health, logs, ops, tasks, views, workers};

/// The API's description.
#[derive(OpenApi)]
#[openapi(
    info(title = "orch", description = "The orch daemon's HTTP API. Every `/v1` route needs the admin token from `<home>/token` as `Authorization: Bearer <token>`; the `/v1/worker` routes (tag `worker`) also take the worker token from `<home>/worker-token`, which every other route refuses with 403."),
    paths(
        health::health,
        health::ready,
        ops::metrics,
        tasks::list,
        tasks::create,
        tasks::get,
        tasks::events,
        tasks::cancel,
        tasks::retry,
        tasks::unblock,
        tasks::approve,
        tasks::submit_workflow,
        tasks::status,
        events::stream_events,
        logs::logs,
        workers::claim,
        workers::heartbeat,
        workers::complete,
        workers::requeue,
    ),
    components(schemas(
        error::ErrorBody,
        error::ErrorDetail,
        views::TaskView,
        views::RunView,
        views::EventView,
        events::StreamedEvent,
        logs::LogLine,
        logs::LogSearch,
        workers::ClaimedRun,
        workers::ClaimedTask,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the `/v1` paths name.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document (open: it holds no secrets).
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
