//! Webhook intake end to end: the real daemon on 127.0.0.1:0, GitHub deliveries signed with the
//! shared secret (and not), and the task webhook with delivery ids.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use orch_server::{serve, ServeError, ServeOptions};
use orch_store::{SqliteOptions, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "It's a Secret to Everybody";

struct Daemon {
    _home: TempDir,
    project: TempDir,
    base: String,
    token: String,
    client: reqwest::Client,
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), ServeError>>,
}

impl Daemon {
    async fn start(configure: impl FnOnce(&mut ServeOptions, &TempDir)) -> Daemon {
        let home = tempfile::tempdir().unwrap();
        let project = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&home.path().join("orch.db"), SqliteOptions::default())
            .await
            .unwrap();
        let mut options = ServeOptions::new(home.path());
        options.workers = 0;
        options.listen = Some("127.0.0.1:0".parse().unwrap());
        options.github_webhook_secret = Some(SECRET.to_owned());
        options.github_project = Some(project.path().to_owned());
        configure(&mut options, &project);
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(serve(store, options, shutdown.clone()));
        let addr_file = home.path().join("serve.addr");
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr: SocketAddr = loop {
            let text = std::fs::read_to_string(&addr_file).unwrap_or_default();
            if let Ok(addr) = text.trim().parse() {
                break addr;
            }
            assert!(!handle.is_finished(), "serve stopped before it listened");
            assert!(Instant::now() < deadline, "serve.addr never appeared");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let token = std::fs::read_to_string(home.path().join("token"))
            .unwrap()
            .trim()
            .to_owned();
        Daemon {
            _home: home,
            project,
            base: format!("http://{addr}"),
            token,
            client: reqwest::Client::new(),
            shutdown,
            handle,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }

    /// Deliver a GitHub event; `signature` is sent as `X-Hub-Signature-256` when given.
    async fn github(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
        signature: Option<String>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(format!("{}/v1/webhooks/github", self.base))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        read(request).await
    }

    /// Deliver a GitHub event signed with the right secret.
    async fn github_signed(
        &self,
        event: &str,
        delivery: &str,
        payload: &Value,
    ) -> (StatusCode, Value) {
        let body = serde_json::to_vec(payload).unwrap();
        let signature = sign(SECRET, &body);
        self.github(event, delivery, &body, Some(signature)).await
    }

    async fn tasks_webhook(&self, delivery: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(format!("{}/v1/webhooks/tasks", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body);
        if let Some(delivery) = delivery {
            request = request.header("x-delivery-id", delivery);
        }
        read(request).await
    }

    async fn tasks(&self) -> Vec<Value> {
        let request = self
            .client
            .get(format!("{}/v1/tasks", self.base))
            .bearer_auth(&self.token);
        let (status, body) = read(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array().unwrap().clone()
    }

    fn project(&self) -> String {
        self.project.path().to_str().unwrap().to_owned()
    }
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn read(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text}"));
    (status, body)
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// An `issues` payload shaped like GitHub's.
fn issue_event(action: &str, number: u64, labels: &[&str]) -> Value {
    json!({
        "action": action,
        "issue": {
            "number": number,
            "title": "Fix the flaky login test",
            "body": "It fails one run in ten.",
            "html_url": format!("https://github.com/acme/widgets/issues/{number}"),
            "state": "open",
            "labels": labels.iter().map(|name| json!({ "id": 1, "name": name, "color": "ededed" })).collect::<Vec<_>>(),
            "user": { "login": "octocat", "id": 1 },
        },
        "repository": { "id": 42, "name": "widgets", "full_name": "acme/widgets", "private": false },
        "sender": { "login": "octocat", "id": 1 },
    })
}

/// An `issue_comment` payload shaped like GitHub's.
fn comment_event(comment_id: u64, text: &str) -> Value {
    json!({
        "action": "created",
        "issue": {
            "number": 7,
            "title": "Dark mode",
            "body": "Please add it.",
            "labels": [{ "name": "enhancement" }],
        },
        "comment": {
            "id": comment_id,
            "body": text,
            "html_url": format!("https://github.com/acme/widgets/issues/7#issuecomment-{comment_id}"),
            "user": { "login": "hubot", "id": 2 },
        },
        "repository": { "full_name": "acme/widgets" },
        "sender": { "login": "hubot", "id": 2 },
    })
}

#[tokio::test]
async fn a_signed_issue_delivered_twice_and_labeled_later_creates_one_task() {
    let daemon = Daemon::start(|_, _| {}).await;
    let opened = issue_event("opened", 12, &["bug", "orch"]);
    let (status, first) = daemon.github_signed("issues", "delivery-1", &opened).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["outcome"], "created");
    let id = first["task"].as_i64().unwrap();

    let tasks = daemon.tasks().await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["id"], id);
    assert_eq!(tasks[0]["title"], "Fix the flaky login test");
    assert_eq!(tasks[0]["key"], "github:acme/widgets#12");

    // GitHub redelivers the same delivery: nothing new, the same task.
    let (status, replay) = daemon.github_signed("issues", "delivery-1", &opened).await;
    assert_eq!(status, StatusCode::OK, "{replay}");
    assert_eq!(replay["outcome"], "duplicate");
    assert_eq!(replay["task"], id);

    // Another delivery about the same issue (labeled again): still one task.
    let labeled = issue_event("labeled", 12, &["bug", "orch"]);
    let (status, again) = daemon.github_signed("issues", "delivery-2", &labeled).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["task"], id);
    assert_eq!(daemon.tasks().await.len(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn an_issue_without_the_orch_label_and_an_unknown_event_are_ignored() {
    let daemon = Daemon::start(|_, _| {}).await;
    let (status, body) = daemon
        .github_signed("issues", "d-1", &issue_event("opened", 3, &["bug"]))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["outcome"], "ignored");
    let (status, body) = daemon
        .github_signed("push", "d-2", &json!({ "ref": "refs/heads/main" }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["outcome"], "ignored");
    assert!(daemon.tasks().await.is_empty());
    daemon.stop().await;
}

#[tokio::test]
async fn a_bad_or_missing_signature_is_refused_with_401_and_creates_nothing() {
    let daemon = Daemon::start(|_, _| {}).await;
    let body = serde_json::to_vec(&issue_event("opened", 5, &["orch"])).unwrap();
    let (status, refused) = daemon
        .github("issues", "d-1", &body, Some(sign("not the secret", &body)))
        .await;
    assert_error(status, &refused, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, refused) = daemon.github("issues", "d-2", &body, None).await;
    assert_error(status, &refused, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, refused) = daemon
        .github("issues", "d-3", &body, Some("sha256=zz".to_owned()))
        .await;
    assert_error(status, &refused, StatusCode::UNAUTHORIZED, "unauthorized");
    // A signature of other bytes than the body sent.
    let (status, refused) = daemon
        .github("issues", "d-4", &body, Some(sign(SECRET, b"{}")))
        .await;
    assert_error(status, &refused, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(daemon.tasks().await.is_empty());
    // The refused delivery ids were not used up: the genuine delivery still creates the task.
    let (status, created) = daemon
        .github("issues", "d-1", &body, Some(sign(SECRET, &body)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    daemon.stop().await;
}

#[tokio::test]
async fn a_comment_mentioning_the_handle_creates_a_task_and_one_not_mentioning_it_does_not() {
    let daemon = Daemon::start(|_, _| {}).await;
    let (status, ignored) = daemon
        .github_signed(
            "issue_comment",
            "c-1",
            &comment_event(100, "Looks good to me"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ignored}");
    assert!(daemon.tasks().await.is_empty());

    let mention = comment_event(101, "@orch please implement this");
    let (status, created) = daemon.github_signed("issue_comment", "c-2", &mention).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let tasks = daemon.tasks().await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["title"], "acme/widgets#7: Dark mode");
    let (status, replay) = daemon.github_signed("issue_comment", "c-2", &mention).await;
    assert_eq!(status, StatusCode::OK, "{replay}");
    assert_eq!(daemon.tasks().await.len(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn the_configured_handle_is_the_one_mentions_are_matched_against() {
    let daemon = Daemon::start(|options, _| options.github_handle = "robo".to_owned()).await;
    let (status, _) = daemon
        .github_signed("issue_comment", "c-1", &comment_event(1, "@orch do it"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = daemon
        .github_signed("issue_comment", "c-2", &comment_event(2, "cc @Robo"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    daemon.stop().await;
}

#[tokio::test]
async fn malformed_json_and_wrong_types_from_github_get_4xx_json_and_change_nothing() {
    let daemon = Daemon::start(|_, _| {}).await;
    let body = b"{\"action\": \"opened\",".to_vec();
    let (status, refused) = daemon
        .github("issues", "m-1", &body, Some(sign(SECRET, &body)))
        .await;
    assert_error(status, &refused, StatusCode::BAD_REQUEST, "malformed");
    let mut wrong = issue_event("opened", 9, &["orch"]);
    wrong["issue"]["number"] = json!("nine");
    let (status, refused) = daemon.github_signed("issues", "m-2", &wrong).await;
    assert_error(
        status,
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    );
    assert_eq!(refused["error"]["field"], "issue.number", "{refused}");
    assert!(daemon.tasks().await.is_empty());
    daemon.stop().await;
}

#[tokio::test]
async fn without_a_secret_the_github_route_answers_404_and_without_a_project_422() {
    let daemon = Daemon::start(|options, _| options.github_webhook_secret = None).await;
    let body = serde_json::to_vec(&issue_event("opened", 1, &["orch"])).unwrap();
    let (status, refused) = daemon
        .github("issues", "x-1", &body, Some(sign(SECRET, &body)))
        .await;
    assert_error(status, &refused, StatusCode::NOT_FOUND, "not_found");
    daemon.stop().await;

    let daemon = Daemon::start(|options, _| options.github_project = None).await;
    let (status, refused) = daemon
        .github_signed("issues", "x-1", &issue_event("opened", 1, &["orch"]))
        .await;
    assert_error(
        status,
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    );
    assert!(daemon.tasks().await.is_empty());
    daemon.stop().await;
}

#[tokio::test]
async fn the_tasks_webhook_with_a_delivery_id_creates_the_task_once() {
    let daemon = Daemon::start(|_, _| {}).await;
    let task = json!({ "project": daemon.project(), "title": "From CI", "labels": ["ci"] });
    let body = serde_json::to_vec(&task).unwrap();
    let (status, first) = daemon.tasks_webhook(Some("ci-1"), body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, replay) = daemon.tasks_webhook(Some("ci-1"), body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{replay}");
    assert_eq!(replay["id"], first["id"]);

    // The id in the body works the same way, and is shared with the header's.
    let mut with_field = task.clone();
    with_field["delivery_id"] = json!("ci-1");
    let (status, replay) = daemon
        .tasks_webhook(None, serde_json::to_vec(&with_field).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{replay}");
    assert_eq!(replay["id"], first["id"]);
    assert_eq!(daemon.tasks().await.len(), 1);

    // Without a delivery id every request creates a task.
    let (status, _) = daemon.tasks_webhook(None, body).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(daemon.tasks().await.len(), 2);
    daemon.stop().await;
}

#[tokio::test]
async fn the_tasks_webhook_refuses_bad_input_naming_the_field_and_changes_nothing() {
    let daemon = Daemon::start(|_, _| {}).await;
    let (status, refused) = daemon
        .tasks_webhook(Some("b-1"), b"{not json".to_vec())
        .await;
    assert_error(status, &refused, StatusCode::BAD_REQUEST, "malformed");
    let cases = [
        (json!({ "project": daemon.project(), "title": 5 }), "title"),
        (
            json!({ "project": daemon.project(), "title": "x", "colour": "red" }),
            ".",
        ),
        (
            json!({ "project": daemon.project(), "title": "x", "delivery_id": 7 }),
            "delivery_id",
        ),
        (json!({ "project": "relative", "title": "x" }), "project"),
        (json!({ "project": daemon.project(), "title": "" }), "title"),
    ];
    for (body, field) in cases {
        let (status, refused) = daemon
            .tasks_webhook(Some("b-2"), serde_json::to_vec(&body).unwrap())
            .await;
        assert_error(
            status,
            &refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        );
        if field != "." {
            assert_eq!(refused["error"]["field"], field, "{refused}");
        }
    }
    // A refused request does not use up its delivery id.
    let good = json!({ "project": daemon.project(), "title": "Fine" });
    let (status, created) = daemon
        .tasks_webhook(Some("b-2"), serde_json::to_vec(&good).unwrap())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(daemon.tasks().await.len(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn the_docs_page_is_open_html_that_reads_the_openapi_document() {
    let daemon = Daemon::start(|_, _| {}).await;
    let response = daemon
        .client
        .get(format!("{}/docs", daemon.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    assert!(page.contains("/openapi.json"));
    assert!(
        !page.contains("https://"),
        "the page must not load anything from the network"
    );
    daemon.stop().await;
}
