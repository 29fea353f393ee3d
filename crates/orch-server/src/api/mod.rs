//! The HTTP API: JSON under `/v1` behind the admin token, `/health`, `/ready` and the generated
//! OpenAPI document at `/openapi.json`.
//!
//! Architecture invariant: handlers only extract, call the store and map; every error leaves
//! through [`error::ApiError`], and every `/v1` route sits behind [`auth::require_token`].

pub mod agents;
pub mod auth;
pub mod bundles;
pub mod convert;
pub mod docs;
pub mod error;
pub mod events;
pub mod fencing;
pub mod forge;
#[doc(hidden)]
pub mod fuzz;
pub mod health;
pub mod info_requests;
pub mod jobs;
pub mod json;
pub mod limits;
pub mod logs;
pub mod mentions;
pub mod openapi;
pub mod ops;
pub mod reviews;
pub mod task_tree;
pub mod tasks;
pub mod tls;
pub mod views;
pub mod webhooks;
pub mod worker_plan;
pub mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use orch_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{ServeError, ServeOptions};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The store, for reads and the workers' fenced requests.
    pub store: Store,
    /// The application layer: every user action goes through it.
    pub app: orch_app::App,
    /// The orch home (run bundles live under it).
    pub home: PathBuf,
    /// The admin token every `/v1` request must carry.
    pub token: Arc<str>,
    /// The worker token, accepted on the `/v1/worker/` routes only.
    pub worker_token: Arc<str>,
    /// The metrics served at `/metrics`, shared with the scheduler and the event feed.
    pub metrics: Arc<ops::Metrics>,
    /// Per-client token buckets; `None` when rate limiting is off.
    pub rate_limiter: Option<Arc<ops::RateLimiter>>,
    /// Newly committed events, for `/v1/events`.
    pub feed: events::EventFeed,
    /// The GitHub webhook's secret, handle and project.
    pub github: Arc<webhooks::GithubSettings>,
    /// The most bytes a remote run's bundle may take on the daemon.
    pub max_bundle_bytes: u64,
    /// Serializes writes to run bundles from remote workers and holds the runs whose bundles
    /// were uploaded lately (see `bundles.rs`).
    pub bundle_lock: Arc<std::sync::Mutex<bundles::Uploaded>>,
    /// The web dashboard's settings (`crate::dashboard`).
    pub dashboard: Arc<crate::dashboard::Settings>,
    /// Remote worker slots heard from and the embedded workers' agent pauses, for the
    /// dashboard's workers and agents pages (`crate::dashboard::fleet`).
    pub fleet: Arc<crate::dashboard::fleet::Fleet>,
}

/// The whole API. `body_limit` caps every request body, in bytes.
pub fn router(state: ApiState, body_limit: usize) -> Router {
    let v1 = Router::new()
        .route("/tasks", get(tasks::list).post(tasks::create))
        .route("/tasks/{id}", get(tasks::get))
        .route("/tasks/{id}/events", get(tasks::events))
        .route("/tasks/{id}/diff", get(tasks::diff))
        .route("/tasks/{id}/cancel", post(tasks::cancel))
        .route("/tasks/{id}/retry", post(tasks::retry))
        .route("/tasks/{id}/unblock", post(tasks::unblock))
        .route("/tasks/{id}/approve", post(tasks::approve))
        .route("/tasks/{id}/kill", post(tasks::kill))
        .route("/tasks/{id}/reject", post(task_tree::reject))
        .route("/tasks/{id}/reply", post(agents::reply))
        .route("/tasks/{id}/usage", get(agents::task_usage))
        .route("/usage", get(agents::usage))
        .route("/usage/limits", get(limits::usage_limits))
        .route("/workflows", post(tasks::submit_workflow))
        .route("/status", get(tasks::status))
        .route("/projects", get(tasks::projects))
        .route("/events", get(events::stream_events))
        .route("/runs/{task}/{attempt}/logs", get(logs::logs))
        .route("/webhooks/tasks", post(webhooks::tasks))
        .route("/tasks/{id}/info-requests", get(info_requests::of_task))
        .route("/tasks/{id}/answers", post(info_requests::answer))
        .route("/info-requests", get(info_requests::open))
        .route("/worker/runs/{run}/info-request", post(info_requests::park))
        .route("/worker/runs/{run}/inputs", post(info_requests::inputs))
        .route("/worker/runs/{run}/children", post(task_tree::children))
        .route("/worker/runs/{run}/plan", post(worker_plan::plan))
        .route("/jobs", get(jobs::list).post(jobs::add))
        .route("/jobs/{name}", axum::routing::delete(jobs::remove))
        .route("/jobs/{name}/enable", post(jobs::enable))
        .route("/jobs/{name}/disable", post(jobs::disable))
        .route("/jobs/{name}/run", post(jobs::run))
        .route("/tasks/{id}/publish", post(forge::publish))
        .merge(workers::routes())
        // Unknown `/v1` paths also need the token, so they do not reveal which routes exist.
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .nest("/v1", v1)
        // Outside the token check: GitHub signs its deliveries instead (HMAC of the body).
        .route("/v1/webhooks/github", post(webhooks::github))
        .route("/docs", get(docs::docs))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/openapi.json", get(openapi::document))
        .route("/metrics", get(ops::metrics))
        // The web dashboard at `/` (HTML pages behind a session cookie; see `dashboard/`).
        .merge(crate::dashboard::routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        // Outermost last: the request id wraps everything, so even a 429 carries one.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::rate_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::count_requests,
        ))
        .layer(axum::middleware::from_fn(ops::request_id))
        .with_state(state)
}

/// Write `text` to `path` whole: readers polling the file (`orch run --wait`, the tests) never
/// see it created but still empty.
fn write_whole(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}

/// Bind `addr`, record the bound address in `<home>/serve.addr`, and serve the API until `stop`
/// fires. The returned handle ends when the server has shut down.
pub(crate) async fn start(
    store: Store,
    options: &ServeOptions,
    addr: SocketAddr,
    metrics: Arc<ops::Metrics>,
    fleet: Arc<crate::dashboard::fleet::Fleet>,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, ServeError> {
    let cors = ops::cors(&options.cors_origins)?;
    // Read before binding, so a bad certificate stops start-up with nothing half started.
    let acceptor = match &options.tls {
        Some(files) => Some(tls::acceptor(&files.cert, &files.key)?),
        None => None,
    };
    let token = auth::load_or_create_token(&options.home)?;
    let worker_token = auth::load_or_create_worker_token(&options.home)?;
    // orch's own tokens are redacted from every spec submitted through this store.
    store.add_secret_values(&[token.clone(), worker_token.clone()]);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Io {
            context: format!(
                "listen on {addr} (is another program using the port? pick another with --listen)"
            ),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ServeError::Io {
        context: format!("read the address bound for {addr}"),
        source,
    })?;
    let addr_file = options.home.join("serve.addr");
    write_whole(&addr_file, &format!("{bound}\n")).map_err(|source| ServeError::Io {
        context: format!("write {}", addr_file.display()),
        source,
    })?;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tracing::info!(%bound, "HTTP API listening on {scheme}://{bound}");
    // The base URL with its scheme, for `orch dashboard` (serve.addr has the address only).
    let url_file = options.home.join("serve.url");
    if let Err(e) = write_whole(&url_file, &format!("{scheme}://{bound}\n")) {
        tracing::warn!(path = %url_file.display(), "could not write: {e}");
    }
    let (feed, feed_poller) =
        events::EventFeed::start(store.clone(), metrics.clone(), stop.clone()).await?;
    let state = ApiState {
        app: orch_app::App::new(store.clone())
            .with_check(Arc::new(crate::submit_check::ConfigCheck::new(
                &options.home,
            )))
            .with_secret_box(options.secret_box.clone()),
        store,
        home: options.home.clone(),
        token: token.into(),
        worker_token: worker_token.into(),
        metrics,
        rate_limiter: ops::RateLimiter::new(options.rate_limit_per_sec, options.rate_limit_burst)
            .map(Arc::new),
        feed,
        github: Arc::new(webhooks::GithubSettings {
            secret: options.github_webhook_secret.clone(),
            handle: options.github_handle.clone(),
            project: options.github_project.clone(),
        }),
        max_bundle_bytes: options.max_bundle_bytes,
        bundle_lock: Arc::default(),
        dashboard: Arc::new(crate::dashboard::Settings::new(options.tls.is_some())),
        fleet,
    };
    let mut app = router(state, options.body_limit);
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    Ok(tokio::spawn(async move {
        // With the peer's address, for rate limiting clients that send no token.
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let served = match acceptor {
            Some(acceptor) => {
                let listener = tls::TlsListener::start(listener, acceptor, stop.clone());
                // `tap_io` (doing nothing here: TCP_NODELAY is set before the handshake) is what
                // gives a custom listener's connections their peer address.
                let listener = axum::serve::ListenerExt::tap_io(listener, |_| {});
                axum::serve(listener, service)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            }
            None => {
                // Small request/response pairs (heartbeats, claims) must not wait on Nagle's
                // algorithm and delayed ACKs: without TCP_NODELAY a claim→complete round trip
                // took ~17 ms.
                let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::warn!(%error, "could not set TCP_NODELAY on a connection");
                    }
                });
                axum::serve(listener, service)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            }
        };
        if let Err(e) = served {
            tracing::error!("the HTTP API failed: {e}");
        }
        if let Err(e) = feed_poller.await {
            tracing::error!("the event feed ended abnormally: {e}");
        }
        // After a clean stop nothing listens there any more; a daemon killed with SIGKILL leaves
        // the file behind, so readers must still expect a refused connection.
        if let Err(e) = std::fs::remove_file(&addr_file) {
            tracing::warn!(path = %addr_file.display(), "could not remove: {e}");
        }
        let _ = std::fs::remove_file(&url_file);
    }))
}
