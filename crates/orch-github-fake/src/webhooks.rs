//! Webhook deliveries, in the order the changes happened, to the configured URL, signed with
//! `X-Hub-Signature-256` (HMAC-SHA256 of the body with the shared secret) like GitHub's.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::state::Delivery;
use crate::Shared;

/// The signature header's value for `body`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub async fn deliver(
    shared: Arc<Shared>,
    mut events: mpsc::UnboundedReceiver<(String, serde_json::Value)>,
) {
    // A receiver that does not answer must not hold up the deliveries after it for long.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    while let Some((event, payload)) = events.recv().await {
        let id = format!("fake-{}", crate::control::random_token());
        let Some((url, secret)) = shared.lock().webhook.clone() else {
            // Recorded, not sent: tests can still see which events a change made.
            shared.lock().deliveries.push(Delivery {
                event,
                id,
                payload,
                status: None,
            });
            continue;
        };
        let body = serde_json::to_vec(&payload).expect("a JSON value serializes");
        let status = client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-github-event", &event)
            .header("x-github-delivery", &id)
            .header("x-hub-signature-256", signature(&secret, &body))
            .header("user-agent", "GitHub-Hookshot/fake")
            .body(body)
            .send()
            .await
            .map(|response| response.status().as_u16())
            .ok();
        shared.lock().deliveries.push(Delivery {
            event,
            id,
            payload,
            status,
        });
    }
}
