//! Live events: one poller reads newly committed events from the store every 100 ms, feeds the
//! metrics, and broadcasts them to every `GET /v1/events` subscriber over SSE.
//!
//! Architecture invariant: N subscribers cost one query per tick, and a subscriber never slows
//! the daemon: the broadcast channel is bounded and never waits for a receiver; one that falls
//! behind gets a `lagged` event with how many it missed, and goes on from the newest.

use std::convert::Infallible;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use orch_core::lifecycle::EventKind;
use orch_core::Status;
use orch_store::{FeedEvent, Store};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::ops::Metrics;
use super::ApiState;
pub use orch_api::StreamedEvent;
use orch_api::{EventView, LaggedEvent};

/// How often the poller asks the store for new events.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Events read per query; a full page is followed by another query at once.
const PAGE: u32 = 1000;
/// Events a subscriber may fall behind before it gets `lagged`.
const CAPACITY: usize = 4096;

/// One committed event, rendered once for all subscribers.
#[derive(Debug)]
pub struct FeedItem {
    id: i64,
    task: i64,
    workflow: Option<i64>,
    to: Status,
    json: String,
}

/// The sending side of the feed; subscribers get a receiver from it.
#[derive(Debug, Clone)]
pub struct EventFeed {
    sender: broadcast::Sender<Arc<FeedItem>>,
    /// Ends every open stream, so a graceful shutdown does not wait for subscribers.
    stop: CancellationToken,
}

impl EventFeed {
    /// Start the poller from the newest event now in the store; it stops with `stop`.
    pub async fn start(
        store: Store,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Result<(EventFeed, JoinHandle<()>), orch_store::StoreError> {
        let after = store.last_event_id().await?;
        let (sender, _) = broadcast::channel(CAPACITY);
        let feed = EventFeed {
            sender,
            stop: stop.clone(),
        };
        let poller = tokio::spawn(poll(store, metrics, feed.sender.clone(), after, stop));
        Ok((feed, poller))
    }

    /// Fires when the API stops; long-lived responses end with it.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<FeedItem>> {
        self.sender.subscribe()
    }
}

async fn poll(
    store: Store,
    metrics: Arc<Metrics>,
    sender: broadcast::Sender<Arc<FeedItem>>,
    mut after: i64,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(POLL_EVERY) => {}
        }
        loop {
            let page = match store.events_after(after, PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!("the event feed could not read events: {e}");
                    break;
                }
            };
            let full = page.len() == PAGE as usize;
            for feed_event in page {
                after = feed_event.event.id;
                observe(&store, &metrics, &feed_event).await;
                let item = FeedItem {
                    id: feed_event.event.id,
                    task: feed_event.event.task.0,
                    workflow: feed_event.workflow.map(|w| w.0),
                    to: feed_event.event.to,
                    json: serde_json::to_string(&StreamedEvent {
                        task: feed_event.event.task.0,
                        workflow: feed_event.workflow.map(|w| w.0),
                        event: EventView::from(&feed_event.event),
                    })
                    .unwrap_or_default(),
                };
                // No receivers is not an error: nobody is listening right now.
                let _ = sender.send(Arc::new(item));
            }
            if !full {
                break;
            }
        }
    }
}

/// Feed the metrics from one committed event, so runs of embedded and remote workers alike are
/// counted where they are recorded.
async fn observe(store: &Store, metrics: &Metrics, feed_event: &FeedEvent) {
    let event = &feed_event.event;
    match event.kind {
        EventKind::Claim => metrics.claimed(),
        EventKind::Complete
        | EventKind::Fail
        | EventKind::Escalate
        | EventKind::Lose
        | EventKind::Requeue => {
            if matches!(event.kind, EventKind::Fail | EventKind::Escalate)
                && event
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("step `"))
            {
                metrics.step_failed();
            }
            if let Some(run) = event.run {
                match store.run(run).await {
                    Ok(run) => {
                        let ms = event.at.0.saturating_sub(run.started_at.0).max(0);
                        metrics.run_ended(&event.kind.to_string(), ms as f64 / 1000.0);
                    }
                    Err(e) => tracing::warn!(run = %run, "could not read the run for metrics: {e}"),
                }
            }
        }
        _ => {}
    }
}

/// Which events to stream.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events of this task.
    pub task: Option<i64>,
    /// Only events of tasks of this workflow.
    pub workflow: Option<i64>,
    /// Only events that move a task into this status.
    pub status: Option<String>,
}

struct Filter {
    task: Option<i64>,
    workflow: Option<i64>,
    status: Option<Status>,
}

impl Filter {
    fn matches(&self, item: &FeedItem) -> bool {
        self.task.is_none_or(|t| t == item.task)
            && self.workflow.is_none_or(|w| Some(w) == item.workflow)
            && self.status.is_none_or(|s| s == item.to)
    }
}

/// Decrements the subscriber gauge when the stream is dropped (the client went away).
struct Subscribed(Arc<Metrics>);

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.sse_subscribers().dec();
    }
}

/// Stream every transition as it is committed, as server-sent events: `transition` events whose
/// data is a `StreamedEvent` and whose id is the event's id, and
/// `lagged` events (`{"missed": n}`) when this client fell behind.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A `text/event-stream` of `transition` and `lagged` events"),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn stream_events(
    State(state): State<ApiState>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Query(query) = query?;
    let status = query
        .status
        .as_deref()
        .map(Status::from_str)
        .transpose()
        .map_err(|e| ApiError::Invalid {
            field: Some("status".to_owned()),
            message: format!("status: {e}"),
        })?;
    let filter = Filter {
        task: query.task,
        workflow: query.workflow,
        status,
    };
    // Subscribed before the response goes out, so every event committed after the client has
    // the response headers reaches it.
    let receiver = state.feed.subscribe();
    state.metrics.sse_subscribers().inc();
    let guard = Subscribed(state.metrics.clone());
    let stop = state.feed.stop.clone();
    let events = stream::unfold(
        (receiver, filter, guard),
        move |(mut receiver, filter, guard)| {
            let stop = stop.clone();
            async move {
                loop {
                    let received = tokio::select! {
                        () = stop.cancelled() => return None,
                        received = receiver.recv() => received,
                    };
                    match received {
                        Ok(item) if filter.matches(&item) => {
                            let event = SseEvent::default()
                                .event("transition")
                                .id(item.id.to_string())
                                .data(item.json.as_str());
                            return Some((Ok(event), (receiver, filter, guard)));
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            let event = SseEvent::default().event("lagged").data(
                                serde_json::to_string(&LaggedEvent { missed }).unwrap_or_default(),
                            );
                            return Some((Ok(event), (receiver, filter, guard)));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
