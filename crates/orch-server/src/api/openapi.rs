//! The OpenAPI document, generated from the handlers and their types, served at `/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    agents, bundles, docs, error, events, health, logs, ops, reviews, tasks, views, webhooks,
    workers,
};

/// The API's description.
#[derive(OpenApi)]
#[openapi(
    info(title = "orch", description = "The orch daemon's HTTP API. Every `/v1` route needs the admin token from `<home>/token` as `Authorization: Bearer <token>`; the `/v1/worker` routes (tag `worker`) also take the worker token from `<home>/worker-token`, which every other route refuses with 403. `/v1/webhooks/github` takes no token: it is authenticated by GitHub's `X-Hub-Signature-256` (security scheme `github_signature`)."),
    paths(
        health::health,
        health::ready,
        ops::metrics,
        tasks::list,
        tasks::create,
        tasks::get,
        tasks::events,
        tasks::diff,
        tasks::cancel,
        tasks::retry,
        tasks::unblock,
        tasks::approve,
        tasks::submit_workflow,
        tasks::status,
        tasks::projects,
        events::stream_events,
        logs::logs,
        workers::claim,
        workers::heartbeat,
        workers::complete,
        workers::requeue,
        agents::reply,
        agents::task_usage,
        agents::usage,
        agents::report_usage,
        reviews::report_review,
        bundles::files,
        bundles::upload,
        webhooks::tasks,
        webhooks::github,
        docs::docs,
    ),
    components(schemas(
        error::ErrorBody,
        error::ErrorDetail,
        views::TaskView,
        tasks::CreatedTask,
        views::RunView,
        views::EventView,
        events::StreamedEvent,
        logs::LogLine,
        logs::LogSearch,
        workers::ClaimedRun,
        workers::ClaimedTask,
        workers::ClaimedReply,
        workers::ClaimedDependency,
        agents::UsageView,
        reviews::ReviewReport,
        reviews::ReviewView,
        agents::UsageSummaryView,
        tasks::CancelRequest,
        tasks::RetryRequest,
        tasks::ProjectView,
        webhooks::WebhookOutcome,
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
        components.add_security_scheme(
            "github_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Hub-Signature-256",
                "`sha256=<hex>`: HMAC-SHA256 of the raw body with the shared webhook secret",
            ))),
        );
    }
}

/// The OpenAPI document (open: it holds no secrets).
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
