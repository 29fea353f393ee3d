//! The HTTP server: routing, the shared state (script, forced answers, request log) and the
//! response helpers every dialect uses.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::script::{Script, Selection, Transcript, Turn};
use crate::{anthropic, gemini, openai_chat, openai_responses};

/// Which wire API a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    Anthropic,
    OpenaiResponses,
    OpenaiChat,
    Gemini,
    /// Any other path (probes such as `HEAD /`).
    Other,
}

/// What the server answered a request with.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Served {
    /// A script turn (or the "done" answer once the turns ran out).
    Turn {
        /// Selected conversation, `None` if no conversation matched or the answer was forced.
        conversation: Option<usize>,
        /// Assistant turns after the latest user text.
        turn_index: usize,
        /// The answer.
        turn: Turn,
        /// True when the answer came from [`crate::ModelServer::force_next`].
        forced: bool,
    },
    /// A side request (title generation and similar) answered without using the script.
    Auxiliary { text: String },
    /// A probe or unknown path.
    Probe,
}

/// One request the server received, as the tests see it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub dialect: Dialect,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Selected headers; credentials are recorded as `"<present>"`, never their value.
    pub headers: BTreeMap<String, String>,
    /// The JSON body (`Null` when empty or not JSON).
    pub body: serde_json::Value,
    pub served: Served,
}

impl RequestRecord {
    /// The body serialized as text, for substring assertions ("the resumed request carried X").
    pub fn body_text(&self) -> String {
        self.body.to_string()
    }

    /// True for requests answered from the script (not probes nor side requests).
    pub fn is_turn(&self) -> bool {
        matches!(self.served, Served::Turn { .. })
    }
}

/// Mutable server state. A `std::sync::Mutex` because it is never held across an `.await`.
#[derive(Debug, Default)]
struct ServerState {
    script: Script,
    forced: VecDeque<Turn>,
    log: Vec<RequestRecord>,
}

/// State shared by all handlers.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<ServerState>,
    pub(crate) shutdown: CancellationToken,
}

impl Shared {
    pub(crate) fn new(script: Script, shutdown: CancellationToken) -> Shared {
        Shared {
            state: Mutex::new(ServerState {
                script,
                ..ServerState::default()
            }),
            shutdown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ServerState> {
        // A panic while holding the lock only happens in a failing test; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn set_script(&self, script: Script) {
        self.lock().script = script;
    }

    pub(crate) fn force_next(&self, turn: Turn) {
        self.lock().forced.push_back(turn);
    }

    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        self.lock().log.clone()
    }

    /// Picks the turn for a transcript (a forced answer first) and logs the request.
    pub(crate) fn decide(&self, incoming: Incoming, transcript: &Transcript) -> Turn {
        let mut state = self.lock();
        let (selection, forced) = match state.forced.pop_front() {
            Some(turn) => (
                Selection {
                    conversation: None,
                    turn_index: transcript.assistant_turns_after_latest_user_text(),
                    turn,
                },
                true,
            ),
            None => (state.script.select(transcript), false),
        };
        let Selection {
            conversation,
            turn_index,
            turn,
        } = selection;
        let served = Served::Turn {
            conversation,
            turn_index,
            turn: turn.clone(),
            forced,
        };
        state.log.push(incoming.into_record(served));
        turn
    }

    /// Logs a request answered without the script.
    pub(crate) fn record(&self, incoming: Incoming, served: Served) {
        self.lock().log.push(incoming.into_record(served));
    }
}

/// A request as read from the wire, before it is answered.
pub(crate) struct Incoming {
    pub(crate) dialect: Dialect,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: serde_json::Value,
}

impl Incoming {
    fn into_record(self, served: Served) -> RequestRecord {
        RequestRecord {
            dialect: self.dialect,
            method: self.method.to_string(),
            path: self.path,
            query: self.query,
            headers: self.headers,
            body: self.body,
            served,
        }
    }
}

const SECRET_HEADERS: &[&str] = &["authorization", "x-api-key", "x-goog-api-key", "api-key"];
const KEPT_HEADERS: &[&str] = &[
    "user-agent",
    "content-type",
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "x-app",
    "originator",
    "session_id",
    "x-stainless-retry-count",
    "x-goog-api-client",
];

fn selected_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut kept = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if SECRET_HEADERS.contains(&name) {
            kept.insert(name.to_owned(), "<present>".to_owned());
        } else if KEPT_HEADERS.contains(&name) {
            kept.insert(
                name.to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            );
        }
    }
    kept
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/responses", post(openai_responses::responses))
        .route("/v1/chat/completions", post(openai_chat::completions))
        .route("/v1beta/models/{*rest}", post(gemini::models))
        .route("/v1/models/{*rest}", post(gemini::models))
        .route("/", any(probe))
        .fallback(probe)
        .with_state(shared)
}

/// Splits a request into what the log keeps and the parsed JSON body.
pub(crate) async fn read_request(dialect: Dialect, request: Request) -> Incoming {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_else(|_| Bytes::new());
    Incoming {
        dialect,
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: selected_headers(&parts.headers),
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    }
}

async fn probe(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let incoming = read_request(Dialect::Other, request).await;
    let known_probe = incoming.path == "/";
    shared.record(incoming, Served::Probe);
    if known_probe {
        StatusCode::OK.into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            json_body(
                &serde_json::json!({"error": {"message": "not found", "type": "not_found_error"}}),
            ),
        )
            .into_response()
    }
}

/// Waits for shutdown: the answer of a `hang` turn.
pub(crate) async fn hang(shared: &Shared) -> Response {
    shared.shutdown.cancelled().await;
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

/// Streaming headers, then a body that sends nothing until shutdown: the answer of `stall`.
pub(crate) fn stall(shared: &Shared) -> Response {
    let shutdown = shared.shutdown.clone();
    let never = futures_util::stream::once(async move {
        shutdown.cancelled_owned().await;
        Ok::<Bytes, std::convert::Infallible>(Bytes::new())
    });
    let mut response = Response::new(Body::from_stream(never));
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

pub(crate) fn json_body(value: &serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

/// A complete server-sent-events body; the CLIs read it as a stream either way.
pub(crate) fn sse_body(text: String) -> Response {
    let mut response = Response::new(Body::from(text));
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

/// One named SSE event (`event:` line plus `data:` line).
pub(crate) fn sse_event(out: &mut String, name: &str, data: &serde_json::Value) {
    out.push_str("event: ");
    out.push_str(name);
    out.push_str("\ndata: ");
    out.push_str(&data.to_string());
    out.push_str("\n\n");
}

/// One unnamed SSE event (`data:` line only).
pub(crate) fn sse_data(out: &mut String, data: &str) {
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
}

/// An error response with `retry-after` and the given extra headers.
pub(crate) fn error_response(
    status: u16,
    retry_after_secs: Option<u64>,
    body: &serde_json::Value,
    extra_headers: &[(&'static str, String)],
) -> Response {
    let mut response = json_body(body);
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    if let Some(secs) = retry_after_secs {
        headers.insert("retry-after", HeaderValue::from(secs));
    }
    for (name, value) in extra_headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(*name, value);
        }
    }
    response
}

/// The default error message for a status.
pub(crate) fn default_error_message(status: u16) -> &'static str {
    match status {
        401 => "invalid x-api-key (scripted)",
        403 => "permission denied (scripted)",
        429 => "rate limited (scripted)",
        529 => "overloaded (scripted)",
        _ => "internal server error (scripted)",
    }
}

/// Serves the router on an already bound listener until `shutdown` is cancelled.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let shutdown = shared.shutdown.clone();
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// The local address a listener is bound to.
pub(crate) fn local_addr(listener: &tokio::net::TcpListener) -> std::io::Result<SocketAddr> {
    listener.local_addr()
}

/// Words in every string inside a JSON value: the deterministic input token count.
pub(crate) fn json_words(value: &serde_json::Value) -> u64 {
    match value {
        serde_json::Value::String(text) => crate::script::word_count(text),
        serde_json::Value::Array(items) => items.iter().map(json_words).sum(),
        serde_json::Value::Object(map) => map.values().map(json_words).sum(),
        _ => 0,
    }
}

/// The text of a content field that is a string or a list of `{type, text}` parts.
pub(crate) fn content_text(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(serde_json::Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}
