//! The OpenAPI document, generated from the handlers and their types, served at `/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::forge;
use super::{
    agents, bundles, docs, events, health, info_requests, jobs, limits, logs, ops, reviews,
    task_tree, tasks, webhooks, worker_plan, workers,
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
        tasks::kill,
        task_tree::reject,
        tasks::submit_workflow,
        tasks::status,
        tasks::projects,
        forge::publish,
        events::stream_events,
        logs::logs,
        workers::claim,
        workers::heartbeat,
        workers::complete,
        workers::requeue,
        agents::reply,
        agents::task_usage,
        agents::usage,
        limits::usage_limits,
        agents::report_usage,
        reviews::report_review,
        bundles::files,
        bundles::upload,
        webhooks::tasks,
        webhooks::github,
        docs::docs,
        info_requests::of_task,
        info_requests::open,
        info_requests::answer,
        info_requests::park,
        info_requests::inputs,
        task_tree::children,
        worker_plan::plan,
        jobs::list,
        jobs::add,
        jobs::remove,
        jobs::enable,
        jobs::disable,
        jobs::run,
    ),
    components(schemas(
        orch_api::ErrorBody,
        orch_api::ErrorDetail,
        jobs::JobView,
        task_tree::ChildrenContext,
        orch_api::PlannedChildren,
        jobs::AddJob,
        jobs::FiringView,
        orch_api::UsageLimitsView,
        orch_api::TaskView,
        orch_api::CreatedTask,
        orch_api::ForgeLinkView,
        forge::PublishView,
        orch_api::RunView,
        orch_api::EventView,
        events::StreamedEvent,
        logs::LogLine,
        logs::LogSearch,
        orch_api::ClaimedRun,
        orch_api::ClaimedTask,
        orch_api::ClaimedReply,
        orch_api::ClaimedDependency,
        agents::UsageView,
        orch_api::ReviewReport,
        orch_api::ReviewView,
        agents::UsageSummaryView,
        orch_api::CancelRequest,
        orch_api::RetryRequest,
        orch_api::ProjectView,
        orch_api::KilledSession,
        task_tree::ApprovalRequest,
        webhooks::WebhookOutcome,
        info_requests::AnswerRequest,
        info_requests::InfoRequestList,
        info_requests::ParkRequest,
        info_requests::ParkedView,
        info_requests::InputValues,
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
