//! Operations: Prometheus metrics at `/metrics`, a request id on every response and log line,
//! per-client rate limiting, and CORS.
//!
//! `/metrics` is open (no token), like `/health`: it holds only counts, never task content, and
//! Prometheus scrapers rarely carry bearer tokens. The daemon listens on loopback unless told
//! otherwise, so the counts do not leave the machine by default.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use orch_core::Status;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use subtle::ConstantTimeEq;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

use super::error::ApiError;
use super::ApiState;
use crate::ServeError;

/// The request id header: echoed when the client sends a usable one, generated otherwise.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// How many requests the client may still send right now.
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    code: u16,
}

fn run_duration_histogram() -> Histogram {
    // 0.1 s to about 55 minutes.
    Histogram::new(exponential_buckets(0.1, 2.0, 16))
}

/// The daemon's metrics, shared by the API, the event feed and the scheduler.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    tasks: Family<StatusLabels, Gauge>,
    claims: Counter,
    lease_expiries: Counter,
    run_duration: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    step_failures: Counter,
    http_requests: Family<HttpLabels, Counter>,
    sse_subscribers: Gauge,
    refused_requests: Family<ReasonLabels, Counter>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every orch metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let tasks = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "orch_tasks",
            "Tasks by status, read from the store",
            tasks.clone(),
        );
        let claims = Counter::default();
        registry.register("orch_claims", "Runs handed to a worker", claims.clone());
        let lease_expiries = Counter::default();
        registry.register(
            "orch_lease_expiries",
            "Runs lost because their lease expired",
            lease_expiries.clone(),
        );
        let run_duration =
            Family::<OutcomeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                run_duration_histogram,
            );
        registry.register(
            "orch_run_duration_seconds",
            "Run durations, from claim to end, by how the run ended",
            run_duration.clone(),
        );
        let step_failures = Counter::default();
        registry.register(
            "orch_step_failures",
            "Runs that failed in a step",
            step_failures.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "orch_http_requests",
            "HTTP requests by method, matched route and status code",
            http_requests.clone(),
        );
        let sse_subscribers = Gauge::default();
        registry.register(
            "orch_sse_subscribers",
            "Clients connected to /v1/events",
            sse_subscribers.clone(),
        );
        let refused_requests = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "orch_refused_requests",
            "Worker requests about a run refused by fencing: `stale_lease` (the holder, too \
             late) or `not_holder` (another worker or a wrong token; rate-limited in the log)",
            refused_requests.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "orch_scheduler_leader",
            "1 while this daemon holds the `scheduler` lease and runs stale recovery, backoff \
             timers and retention for every daemon on the database; 0 otherwise",
            leader.clone(),
        );
        Metrics {
            leader,
            registry,
            refused_requests,
            tasks,
            claims,
            lease_expiries,
            run_duration,
            step_failures,
            http_requests,
            sse_subscribers,
        }
    }

    /// A run was claimed.
    pub fn claimed(&self) {
        self.claims.inc();
    }

    /// `n` runs lost their lease.
    pub fn leases_expired(&self, n: usize) {
        self.lease_expiries
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// A run ended (`outcome`: the event kind that ended it) after `seconds`.
    pub fn run_ended(&self, outcome: &str, seconds: f64) {
        self.run_duration
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .observe(seconds);
    }

    /// A worker request about a run was refused (`reason`: `stale_lease` or `not_holder`).
    pub fn refused(&self, reason: &str) {
        self.refused_requests
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Whether this daemon holds the `scheduler` lease now.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// A run failed in a step.
    pub fn step_failed(&self) {
        self.step_failures.inc();
    }

    /// The gauge of `/v1/events` subscribers.
    pub fn sse_subscribers(&self) -> &Gauge {
        &self.sse_subscribers
    }

    /// Set the task gauges from fresh counts (every status, zero included).
    fn set_task_counts(&self, counts: &std::collections::BTreeMap<Status, u64>) {
        for status in Status::ALL {
            let n = counts.get(&status).copied().unwrap_or(0);
            self.tasks
                .get_or_create(&StatusLabels {
                    status: status.to_string(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The registry in the OpenMetrics text format.
    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The daemon's metrics in the Prometheus (OpenMetrics) text format; open, like `/health`.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format"),
        (status = 500, body = orch_api::ErrorBody)))]
pub async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let counts = state.store.status_counts().await?;
    state.metrics.set_task_counts(&counts);
    let text = state.metrics.encode().map_err(|e| ApiError::internal(&e))?;
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served, if called while serving one.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A client's id is echoed only if it is short and plain, so it cannot forge log lines.
fn usable_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
    (!text.is_empty() && text.len() <= 128 && text.chars().all(plain)).then(|| text.to_owned())
}

/// Middleware: give the request an id, serve it inside a tracing span carrying that id (so
/// every log line of the request names it), and send the id back in `x-request-id`.
pub async fn request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(X_REQUEST_ID)
        .and_then(usable_request_id)
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path()
    );
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(request).instrument(span))
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}

/// Middleware: count the request by method, matched route template and status code.
pub async fn count_requests(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    // The template (`/v1/tasks/{id}`), never the raw path, so the label set stays bounded.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method,
            route,
            code: response.status().as_u16(),
        })
        .inc();
    response
}

/// Above this many tracked clients, buckets idle long enough to be full again are dropped; if
/// every tracked client is still active, a new client is refused until one goes idle.
const MAX_CLIENTS: usize = 10_000;

/// Token buckets per client.
#[derive(Debug)]
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    // A std mutex: the critical section is a map lookup and arithmetic, never an `.await`.
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Whether a request may go ahead.
enum Verdict {
    Allowed { remaining: u64 },
    Limited { retry_after: Duration },
}

impl RateLimiter {
    /// `per_sec` requests a second with bursts of `burst`; `per_sec == 0` disables the limit.
    pub fn new(per_sec: u32, burst: u32) -> Option<RateLimiter> {
        (per_sec > 0).then(|| RateLimiter {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    fn check(&self, client: &str, now: Instant) -> Verdict {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(client) {
            let refill = Duration::from_secs_f64(self.burst / self.per_sec);
            buckets.retain(|_, b| now.duration_since(b.last) < refill);
            if buckets.len() >= MAX_CLIENTS {
                return Verdict::Limited {
                    retry_after: Duration::from_secs(1),
                };
            }
        }
        let bucket = buckets.entry(client.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_sec).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Verdict::Allowed {
                remaining: bucket.tokens.floor() as u64,
            }
        } else {
            Verdict::Limited {
                retry_after: Duration::from_secs_f64((1.0 - bucket.tokens) / self.per_sec),
            }
        }
    }
}

/// Who a request counts against: the admin token when it is presented, otherwise the peer's IP
/// address. Made-up tokens count against the IP, so they cannot mint fresh buckets. `None` for
/// the worker token: remote workers are part of the daemon, and throttling their claims and
/// heartbeats would only cost leases.
fn client_key(state: &ApiState, request: &Request) -> Option<String> {
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    if let Some(token) = token {
        if bool::from(token.as_bytes().ct_eq(state.token.as_bytes())) {
            return Some("token:admin".to_owned());
        }
        if bool::from(token.as_bytes().ct_eq(state.worker_token.as_bytes())) {
            return None;
        }
    }
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
    Some(format!("ip:{ip}"))
}

/// Middleware: refuse a client over its rate with 429 and `Retry-After`; every other response
/// carries `X-RateLimit-Remaining`. `/health` is exempt, so probes never compete with clients,
/// and so are requests with the worker token (see [`client_key`]).
pub async fn rate_limit(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(limiter) = state.rate_limiter.as_deref() else {
        return next.run(request).await;
    };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let Some(client) = client_key(&state, &request) else {
        return next.run(request).await;
    };
    match limiter.check(&client, Instant::now()) {
        Verdict::Allowed { remaining } => {
            let mut response = next.run(request).await;
            response
                .headers_mut()
                .insert(X_RATELIMIT_REMAINING, HeaderValue::from(remaining));
            response
        }
        Verdict::Limited { retry_after } => {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            let mut response = ApiError::RateLimited {
                retry_after: seconds,
            }
            .into_response();
            let headers = response.headers_mut();
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
            headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(0u64));
            response
        }
    }
}

/// The CORS layer for `origins` (`*` allows any origin); `None` when the list is empty, so no
/// CORS headers are sent and browsers keep the same-origin policy.
pub fn cors(origins: &[String]) -> Result<Option<CorsLayer>, ServeError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|origin| {
                HeaderValue::from_str(origin).map_err(|e| ServeError::Io {
                    context: format!("CORS origin {origin:?} is not a valid header value"),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(values)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([AUTHORIZATION, CONTENT_TYPE, X_REQUEST_ID])
            .expose_headers([X_REQUEST_ID, X_RATELIMIT_REMAINING, RETRY_AFTER])
            .max_age(Duration::from_secs(3600)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_the_burst_then_refuses_then_refills() {
        let limiter = RateLimiter::new(10, 3).expect("enabled");
        let start = Instant::now();
        for left in [2, 1, 0] {
            assert!(
                matches!(limiter.check("a", start), Verdict::Allowed { remaining } if remaining == left)
            );
        }
        assert!(matches!(limiter.check("a", start), Verdict::Limited { .. }));
        assert!(matches!(limiter.check("b", start), Verdict::Allowed { .. }));
        let later = start + Duration::from_millis(150);
        assert!(matches!(limiter.check("a", later), Verdict::Allowed { .. }));
    }

    #[test]
    fn a_rate_of_zero_disables_the_limit() {
        assert!(RateLimiter::new(0, 100).is_none());
    }
}
