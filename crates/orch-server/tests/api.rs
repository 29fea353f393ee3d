//! The HTTP API end to end: the real daemon (`serve`) on 127.0.0.1:0 over a real SQLite store,
//! spoken to with a real HTTP client.

#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use orch_server::{serve, ServeError, ServeOptions};
use orch_store::{SqliteOptions, Store};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The body limit the tests run with, small so an oversized body is cheap to send.
const BODY_LIMIT: usize = 16 * 1024;

/// A running daemon with its API, on a fresh home.
struct Daemon {
    home: TempDir,
    project: TempDir,
    base: String,
    token: String,
    worker_token: String,
    client: reqwest::Client,
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), ServeError>>,
}

async fn open_store(home: &Path) -> Store {
    Store::open_sqlite(&home.join("orch.db"), SqliteOptions::default())
        .await
        .unwrap()
}

fn options(home: &Path, listen: &str) -> ServeOptions {
    let mut options = ServeOptions::new(home);
    // No embedded workers: tasks stay where the tests put them.
    options.workers = 0;
    options.listen = Some(listen.parse().unwrap());
    options.body_limit = BODY_LIMIT;
    // Configured, so the GitHub webhook route answers (and refuses unsigned deliveries).
    options.github_webhook_secret = Some("api-test-secret".to_owned());
    options
}

impl Daemon {
    async fn start() -> Daemon {
        Daemon::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut ServeOptions)) -> Daemon {
        let home = tempfile::tempdir().unwrap();
        let project = tempfile::tempdir().unwrap();
        let store = open_store(home.path()).await;
        let shutdown = CancellationToken::new();
        let mut options = options(home.path(), "127.0.0.1:0");
        configure(&mut options);
        let handle = tokio::spawn(serve(store, options, shutdown.clone()));
        let addr = support::serve_addr(home.path(), &handle).await;
        let token = std::fs::read_to_string(home.path().join("token"))
            .unwrap()
            .trim()
            .to_owned();
        let worker_token = std::fs::read_to_string(home.path().join("worker-token"))
            .unwrap()
            .trim()
            .to_owned();
        Daemon {
            home,
            project,
            base: format!("http://{addr}"),
            token,
            worker_token,
            client: reqwest::Client::new(),
            shutdown,
            handle,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }

    /// Send a request with the admin token; returns the status and the JSON body.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request).await
    }

    /// Send raw bytes as a JSON body with the admin token.
    async fn post_raw(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body);
        read(request).await
    }

    fn project(&self) -> String {
        self.project.path().to_str().unwrap().to_owned()
    }

    async fn create_task(&self, title: &str) -> i64 {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/tasks",
                Some(json!({ "project": self.project(), "title": title })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// Send a request with the worker token.
    async fn worker_call(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.worker_token)
            .json(&body);
        read(request).await
    }

    /// Send a request about a run as `worker` presenting `token`, as a remote worker does: the
    /// worker token, and the worker's name and the run's token in headers.
    async fn run_call(
        &self,
        worker: &str,
        token: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.worker_token)
            .header("x-orch-worker", worker)
            .header("x-orch-fencing-token", token)
            .json(&body);
        read(request).await
    }

    /// Claim as `worker`, not waiting: the claim's JSON, its run id and its secret token.
    async fn claim_run(&self, worker: &str) -> (Value, i64, String) {
        let claim = self.claim_now(worker).await;
        let run = claim["run"].as_i64().unwrap();
        let token = claim["token"].as_str().unwrap().to_owned();
        (claim, run, token)
    }

    /// Claim with the worker token, not waiting; the claim's JSON.
    async fn claim_now(&self, worker: &str) -> Value {
        let (status, claim) = self
            .worker_call(
                "/v1/worker/claim",
                json!({ "worker": worker, "lease_ms": 30_000, "wait_ms": 0 }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{claim}");
        claim
    }

    async fn task_count(&self) -> u64 {
        let (status, body) = self.call(Method::GET, "/v1/status", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["total"].as_u64().unwrap()
    }
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

#[tokio::test]
async fn a_task_can_be_created_listed_fetched_and_cancelled() {
    let daemon = Daemon::start().await;
    let (status, created) = daemon
        .call(
            Method::POST,
            "/v1/tasks",
            Some(json!({
                "project": daemon.project(),
                "title": "Fix the flaky test",
                "labels": ["area:store"],
                "priority": 5,
                "steps": [{ "exec": [{ "argv": ["cargo", "test"] }] }, { "agent": "sim" }],
                "max_attempts": 2,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "queued");
    assert_eq!(created["priority"], 5);
    assert_eq!(created["max_attempts"], 2);
    let id = created["id"].as_i64().unwrap();

    let (status, listed) = daemon
        .call(Method::GET, "/v1/tasks?status=queued&limit=10", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let ids: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![id]);

    let (status, detail) = daemon
        .call(Method::GET, &format!("/v1/tasks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["task"]["title"], "Fix the flaky test");
    assert_eq!(detail["spec"]["steps"].as_array().unwrap().len(), 2);
    assert_eq!(detail["runs"], json!([]));
    assert_eq!(detail["events"][0]["to"], "queued");

    let (status, cancelled) = daemon
        .call(Method::POST, &format!("/v1/tasks/{id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled, json!({ "id": id, "status": "cancelled" }));

    let (status, again) = daemon
        .call(Method::POST, &format!("/v1/tasks/{id}/cancel"), None)
        .await;
    assert_error(status, &again, StatusCode::CONFLICT, "conflict");
    let (status, events) = daemon
        .call(Method::GET, &format!("/v1/tasks/{id}/events"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert_eq!(
        events.as_array().unwrap().last().unwrap()["to"],
        "cancelled"
    );
    let (status, missing) = daemon.call(Method::GET, "/v1/tasks/999", None).await;
    assert_error(status, &missing, StatusCode::NOT_FOUND, "not_found");
    daemon.stop().await;
}

#[tokio::test]
async fn a_step_name_that_would_leave_the_bundle_is_refused_as_in_a_task_file() {
    // Regression: the API had its own task checks, weaker than the task file's; both now go
    // through `TaskSpec::parse`.
    let daemon = Daemon::start().await;
    let (status, body) = daemon
        .call(
            Method::POST,
            "/v1/tasks",
            Some(json!({
                "project": daemon.project(),
                "title": "Escape",
                "steps": [{ "name": "../../x", "exec": [{ "argv": ["true"] }] }],
            })),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(body["error"]["field"], "steps[0].name", "{body}");
    let (_, listed) = daemon.call(Method::GET, "/v1/tasks", None).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
}

#[tokio::test]
async fn a_workflow_submits_its_tasks_with_their_dependencies() {
    let daemon = Daemon::start().await;
    let yaml = "name: pair\ntasks:\n  - id: build\n    title: Build\n  - id: test\n    title: Test\n    needs: [build]\n";
    let (status, body) = daemon
        .call(
            Method::POST,
            "/v1/workflows",
            Some(json!({ "project": daemon.project(), "yaml": yaml })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let tasks = body["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[1]["needs"], json!([tasks[0]["id"]]));
    assert_eq!(tasks[1]["status"], "waiting");
    daemon.stop().await;
}

#[tokio::test]
async fn a_workflow_with_an_unknown_need_is_refused_with_line_and_column_and_creates_nothing() {
    let daemon = Daemon::start().await;
    let yaml = "tasks:\n  - id: a\n    title: A\n    needs: [nope]\n";
    let (status, body) = daemon
        .call(
            Method::POST,
            "/v1/workflows",
            Some(json!({ "project": daemon.project(), "yaml": yaml })),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(body["error"]["field"], "yaml");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("workflow.yml:4:"), "{message}");
    assert!(message.contains("nope"), "{message}");
    assert_eq!(daemon.task_count().await, 0);
    daemon.stop().await;
}

#[tokio::test]
async fn every_v1_route_in_the_openapi_document_refuses_a_missing_or_a_wrong_token_and_only_worker_routes_take_the_worker_token(
) {
    let daemon = Daemon::start().await;
    let id = daemon.create_task("Guarded").await;
    let (status, document) = read(daemon.client.get(format!("{}/openapi.json", daemon.base))).await;
    assert_eq!(status, StatusCode::OK);
    let paths = document["paths"].as_object().unwrap();
    let mut checked = 0;
    let mut signed = 0;
    for (path, operations) in paths.iter().filter(|(path, _)| path.starts_with("/v1/")) {
        let url = format!(
            "{}{}",
            daemon.base,
            path.replace("{id}", &id.to_string()).replace("{run}", "1")
        );
        for (method, operation) in operations.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let bearer = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if !bearer {
                // Signed instead of token-authenticated: only the GitHub webhook may be.
                assert_eq!(
                    (&method, path.as_str()),
                    (&Method::POST, "/v1/webhooks/github")
                );
                assert!(operation["security"][0].get("github_signature").is_some());
                let unsigned = daemon.client.request(method.clone(), &url).json(&json!({}));
                let (status, body) = read(unsigned).await;
                assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
                signed += 1;
                continue;
            }
            let without = daemon.client.request(method.clone(), &url).json(&json!({}));
            let (status, body) = read(without).await;
            assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
            let wrong = daemon
                .client
                .request(method.clone(), &url)
                .bearer_auth(format!("{}0", &daemon.token[1..]))
                .json(&json!({}));
            let (status, body) = read(wrong).await;
            assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
            if !path.starts_with("/v1/worker/") {
                let worker = daemon
                    .client
                    .request(method.clone(), &url)
                    .bearer_auth(&daemon.worker_token)
                    .json(&json!({}));
                let (status, body) = read(worker).await;
                assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
            }
            checked += 1;
        }
    }
    assert_eq!(signed, 1, "the GitHub webhook is missing from the document");
    // Every task route and more; a shrinking count means routes fell out of the document.
    assert!(
        checked >= 14,
        "only {checked} operations under /v1 in the document"
    );
    // Nothing was done by the refused requests.
    let (_, task) = daemon
        .call(Method::GET, &format!("/v1/tasks/{id}"), None)
        .await;
    assert_eq!(task["task"]["status"], "queued");
    assert_eq!(daemon.task_count().await, 1);
    daemon.stop().await;
}

#[tokio::test]
async fn malformed_json_a_wrong_type_an_unknown_field_and_an_oversized_body_change_nothing() {
    let daemon = Daemon::start().await;
    daemon.create_task("Already there").await;
    let project = daemon.project();

    let (status, body) = daemon.post_raw("/v1/tasks", b"{\"title\": ".to_vec()).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "malformed");

    let wrong_type = json!({ "project": project, "title": "T", "priority": "high" });
    let (status, body) = daemon
        .call(Method::POST, "/v1/tasks", Some(wrong_type))
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(body["error"]["field"], "priority");

    let unknown =
        json!({ "project": project, "title": "T", "steps": [{ "agent": "sim", "colour": "red" }] });
    let (status, body) = daemon.call(Method::POST, "/v1/tasks", Some(unknown)).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(body["error"]["field"], "steps[0].colour");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{body}"
    );

    let oversized = json!({ "project": project, "title": "T", "body": "x".repeat(BODY_LIMIT * 2) });
    let (status, body) = daemon
        .call(Method::POST, "/v1/tasks", Some(oversized))
        .await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "too_large");

    let relative = json!({ "project": "relative/dir", "title": "T" });
    let (status, body) = daemon.call(Method::POST, "/v1/tasks", Some(relative)).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(body["error"]["field"], "project");

    let (status, body) = daemon
        .call(Method::GET, "/v1/tasks?status=sleeping", None)
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let (status, body) = daemon.call(Method::GET, "/v1/tasks/abc", None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "malformed");

    assert_eq!(daemon.task_count().await, 1);
    daemon.stop().await;
}

#[tokio::test]
async fn health_ready_and_the_openapi_document_need_no_token_and_unknown_routes_answer_json() {
    let daemon = Daemon::start().await;
    for path in ["/health", "/ready"] {
        let (status, body) = read(daemon.client.get(format!("{}{path}", daemon.base))).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body, json!({ "status": "ok" }));
    }
    let (status, document) = read(daemon.client.get(format!("{}/openapi.json", daemon.base))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        document["paths"]["/v1/tasks/{id}/cancel"]["post"].is_object(),
        "{document}"
    );
    let (status, body) = daemon.call(Method::DELETE, "/v1/tasks", None).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let (status, body) = daemon.call(Method::GET, "/v1/nothing-here", None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = read(
        daemon
            .client
            .get(format!("{}/v1/nothing-here", daemon.base)),
    )
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    daemon.stop().await;
}

#[tokio::test]
async fn the_token_file_has_mode_0600_and_is_reused_on_the_next_start() {
    let daemon = Daemon::start().await;
    let token_file = daemon.home.path().join("token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    assert_eq!(daemon.token.len(), 64);
    let (token, home) = (daemon.token.clone(), daemon.home.path().to_owned());
    daemon.shutdown.cancel();
    daemon.handle.await.unwrap().unwrap();
    let token_again = orch_server::api::auth::load_or_create_token(&home).unwrap();
    assert_eq!(token_again, token);
}

#[tokio::test]
async fn a_token_file_others_can_read_stops_the_daemon_from_starting() {
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("token");
    std::fs::write(&token_file, "secret\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = open_store(home.path()).await;
    let result = serve(
        store,
        options(home.path(), "127.0.0.1:0"),
        CancellationToken::new(),
    )
    .await;
    let error = result.unwrap_err();
    assert!(matches!(error, ServeError::TokenExposed { .. }), "{error}");
    assert!(error.to_string().contains("chmod 600"), "{error}");
}

#[tokio::test]
async fn a_non_loopback_listen_address_is_refused_without_the_flag() {
    let home = tempfile::tempdir().unwrap();
    let store = open_store(home.path()).await;
    let result = serve(
        store,
        options(home.path(), "0.0.0.0:0"),
        CancellationToken::new(),
    )
    .await;
    let error = result.unwrap_err();
    assert!(matches!(error, ServeError::NonLoopback(_)), "{error}");
    assert!(error.to_string().contains("--insecure-listen"), "{error}");
    assert!(!home.path().join("serve.addr").exists());
}

#[tokio::test]
async fn a_remote_worker_claims_heartbeats_and_completes_a_run_over_http() {
    let daemon = Daemon::start().await;
    let id = daemon.create_task("Remote").await;
    let claim = daemon.claim_now("remote-a").await;
    assert_eq!(claim["task"]["id"], id, "{claim}");
    assert_eq!(claim["task"]["status"], "running", "{claim}");
    assert_eq!(claim["task"]["spec"]["title"], "Remote", "{claim}");
    assert_eq!(claim["attempt"], 1, "{claim}");
    assert_eq!(claim["owner"], "remote-a", "{claim}");
    assert_eq!(claim["project_dir"], daemon.project(), "{claim}");
    let (run, token) = (
        claim["run"].as_i64().unwrap(),
        claim["token"].as_str().unwrap().to_owned(),
    );
    let (status, beat) = daemon
        .run_call(
            "remote-a",
            &token,
            &format!("/v1/worker/runs/{run}/heartbeat"),
            json!({ "lease_ms": 60_000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{beat}");
    assert!(
        beat["lease_expires_at"].as_i64().unwrap() > claim["lease_expires_at"].as_i64().unwrap()
    );
    let (status, done) = daemon
        .run_call(
            "remote-a",
            &token,
            &format!("/v1/worker/runs/{run}/complete"),
            json!({ "outcome": "succeeded", "reason": "all steps passed" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "done");
    let (_, task) = daemon
        .call(Method::GET, &format!("/v1/tasks/{id}"), None)
        .await;
    assert_eq!(task["task"]["status"], "done", "{task}");
    // Nothing else is queued: a claim that does not wait answers 204 at once.
    let nothing = daemon
        .client
        .post(format!("{}/v1/worker/claim", daemon.base))
        .bearer_auth(&daemon.worker_token)
        .json(&json!({ "worker": "remote-a", "lease_ms": 30_000, "wait_ms": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(nothing.status(), StatusCode::NO_CONTENT);
    daemon.stop().await;
}

#[tokio::test]
async fn a_made_up_token_is_refused_403_a_late_one_409_and_a_requeue_gives_the_task_back() {
    let daemon = Daemon::start().await;
    let id = daemon.create_task("Fenced").await;
    let (_, run, token) = daemon.claim_run("remote-a").await;
    let stale = "0".repeat(32);
    let (status, body) = daemon
        .run_call(
            "remote-a",
            &stale,
            &format!("/v1/worker/runs/{run}/heartbeat"),
            json!({ "lease_ms": 30_000 }),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "not_lease_holder");
    let (status, body) = daemon
        .run_call(
            "remote-a",
            &stale,
            &format!("/v1/worker/runs/{run}/complete"),
            json!({ "outcome": "succeeded" }),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "not_lease_holder");
    let (status, body) = daemon
        .run_call(
            "remote-a",
            &token,
            &format!("/v1/worker/runs/{run}/requeue"),
            json!({ "reason": "shutting down" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Requeued without delay: `retry_wait` until the scheduler's next pass queues it.
    assert_eq!(body["status"], "retry_wait");
    // The holder's own token is stale now (409, its signal to stop), and the task goes to the next claimer.
    let (status, body) = daemon
        .run_call(
            "remote-a",
            &token,
            &format!("/v1/worker/runs/{run}/complete"),
            json!({ "outcome": "succeeded" }),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "lease_lost");
    let (status, again) = daemon
        .worker_call(
            "/v1/worker/claim",
            json!({ "worker": "remote-b", "lease_ms": 30_000, "wait_ms": 10_000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["task"]["id"], id);
    assert_ne!(again["token"], token.as_str());
    daemon.stop().await;
}

#[tokio::test]
async fn a_repeated_identical_completion_is_answered_200_twice_and_recorded_once() {
    let daemon = Daemon::start().await;
    let id = daemon.create_task("Twice").await;
    let (_, run, token) = daemon.claim_run("remote-a").await;
    let path = format!("/v1/worker/runs/{run}/complete");
    let body = json!({ "outcome": "succeeded", "reason": "all steps passed" });
    let (first, answer) = daemon
        .run_call("remote-a", &token, &path, body.clone())
        .await;
    assert_eq!(first, StatusCode::OK, "{answer}");
    let (second, again) = daemon.run_call("remote-a", &token, &path, body).await;
    assert_eq!(second, StatusCode::OK, "{again}");
    assert_eq!(answer["status"], "done");
    assert_eq!(again["status"], "done");
    // A different outcome for the same run is not a repeat.
    let (status, refused) = daemon
        .run_call("remote-a", &token, &path, json!({ "outcome": "failed" }))
        .await;
    assert_error(status, &refused, StatusCode::CONFLICT, "lease_lost");
    let (_, events) = daemon
        .call(Method::GET, &format!("/v1/tasks/{id}/events"), None)
        .await;
    let completions = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["kind"] == "complete")
        .count();
    assert_eq!(completions, 1, "{events}");
    daemon.stop().await;
}

#[tokio::test]
async fn a_waiting_claim_returns_the_task_submitted_while_it_waits() {
    let daemon = Daemon::start().await;
    let waiting = {
        let request = daemon
            .client
            .post(format!("{}/v1/worker/claim", daemon.base))
            .bearer_auth(&daemon.worker_token)
            .json(&json!({ "worker": "remote-a", "lease_ms": 30_000, "wait_ms": 20_000 }));
        tokio::spawn(async move { read(request).await })
    };
    // Let the claim reach the daemon and find the queue empty first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the claim did not wait");
    let id = daemon.create_task("Soon").await;
    let (status, claim) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{claim}");
    assert_eq!(claim["task"]["id"], id, "{claim}");
    daemon.stop().await;
}

#[tokio::test]
async fn a_worker_name_of_the_embedded_workers_and_a_too_short_lease_are_refused() {
    let daemon = Daemon::start().await;
    daemon.create_task("Guarded").await;
    let (status, body) = daemon
        .worker_call(
            "/v1/worker/claim",
            json!({ "worker": "embedded-1", "lease_ms": 30_000 }),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(body["error"]["field"], "worker");
    let (status, body) = daemon
        .worker_call(
            "/v1/worker/claim",
            json!({ "worker": "remote", "lease_ms": 5 }),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(body["error"]["field"], "lease_ms");
    let (_, task) = daemon.call(Method::GET, "/v1/tasks/1", None).await;
    assert_eq!(task["task"]["status"], "queued");
    daemon.stop().await;
}

/// A tar file of `(path, content)` members, and its sha256.
fn tar_of(files: &[(&str, &[u8])]) -> (Vec<u8>, String) {
    use sha2::Digest;
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, *content).unwrap();
    }
    let bytes = builder.into_inner().unwrap();
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    (bytes, sha)
}

fn sha_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Daemon {
    async fn upload(&self, run: i64, token: &str, tar: Vec<u8>, sha: &str) -> (StatusCode, Value) {
        self.upload_as("remote-a", run, token, tar, sha).await
    }

    async fn upload_as(
        &self,
        worker: &str,
        run: i64,
        token: &str,
        tar: Vec<u8>,
        sha: &str,
    ) -> (StatusCode, Value) {
        let request = self
            .client
            .put(format!("{}/v1/worker/runs/{run}/bundle", self.base))
            .bearer_auth(&self.worker_token)
            .header("x-orch-worker", worker)
            .header("x-orch-fencing-token", token)
            .header("x-orch-bundle-sha256", sha)
            .body(tar);
        read(request).await
    }
}

#[tokio::test]
async fn a_remote_runs_streamed_files_and_bundle_reach_the_daemons_run_directory_fenced_idempotent_and_bounded(
) {
    let daemon = Daemon::start_with(|options| options.max_bundle_bytes = 12 * 1024).await;
    let id = daemon.create_task("Remote bundle").await;
    let (_, run, token) = daemon.claim_run("remote-a").await;
    let files = format!("/v1/worker/runs/{run}/files");
    let piece = |path: &str, offset: u64, data: &[u8]| json!({ "path": path, "offset": offset, "data": base64(data) });

    // A made-up token is refused and the refusal recorded.
    let (status, body) = daemon
        .run_call(
            "remote-a",
            &"0".repeat(32),
            &files,
            json!({ "files": [piece("logs.txt", 0, b"x")] }),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "not_lease_holder");
    let (_, events) = daemon
        .call(Method::GET, &format!("/v1/tasks/{id}/events"), None)
        .await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "refused"),
        "{events:#}"
    );

    // Appends by offset: a repeat adds nothing, a gap is not applied and the answer says where
    // to resume.
    for _ in 0..2 {
        let (status, body) = daemon
            .run_call(
                "remote-a",
                &token,
                &files,
                json!({ "files": [piece("logs.txt", 0, b"hello\n")] }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["files"]["logs.txt"], 6, "{body}");
    }
    let (_, body) = daemon
        .run_call(
            "remote-a",
            &token,
            &files,
            json!({ "files": [
                piece("logs.txt", 3, b"lo\nworld\n"),
                piece("steps/s/cmd-1.stdout.log", 10, b"late"),
            ] }),
        )
        .await;
    assert_eq!(body["files"]["logs.txt"], 12, "{body}");
    assert_eq!(body["files"]["steps/s/cmd-1.stdout.log"], 0, "{body}");
    let dir = daemon
        .home
        .path()
        .join("runs")
        .join(id.to_string())
        .join("1");
    assert_eq!(
        std::fs::read_to_string(dir.join("logs.txt")).unwrap(),
        "hello\nworld\n"
    );
    // The daemon's own read paths serve it.
    let response = daemon
        .client
        .get(format!("{}/v1/runs/{id}/1/logs", daemon.base))
        .bearer_auth(&daemon.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("world"));

    for bad in ["../escape.txt", "/etc/passwd", ".hidden", "steps/../../x"] {
        let (status, body) = daemon
            .run_call(
                "remote-a",
                &token,
                &files,
                json!({ "files": [piece(bad, 0, b"x")] }),
            )
            .await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }
    // Within the body limit (16 KiB here) but past the bundle limit (12 KiB) on the second piece.
    let (status, body) = daemon
        .run_call(
            "remote-a",
            &token,
            &files,
            json!({ "files": [piece("big.log", 0, &[b'x'; 8 * 1024])] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = daemon
        .run_call(
            "remote-a",
            &token,
            &files,
            json!({ "files": [piece("big.log", 8 * 1024, &[b'x'; 8 * 1024])] }),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "bundle_too_large",
    );

    // The upload: checked against its sha256 and the manifest's digests.
    let output = b"out\n";
    let manifest = json!({ "entries": [{ "type": "command", "step": "s",
        "stdout": { "path": "steps/s/cmd-1.stdout.log", "sha256": sha_hex(output) },
        "stderr": { "path": "steps/s/cmd-1.stderr.log", "sha256": sha_hex(b"") } }] })
    .to_string();
    let members: Vec<(&str, &[u8])> = vec![
        ("logs.txt", b"hello\nworld\nrun succeeded\n"),
        ("result.json", br#"{"status":"succeeded"}"#),
        ("manifest.json", manifest.as_bytes()),
        ("steps/s/cmd-1.stdout.log", output),
        ("steps/s/cmd-1.stderr.log", b""),
    ];
    let (tar, sha) = tar_of(&members);
    let (status, body) = daemon
        .upload(run, &token, tar.clone(), &sha_hex(b"other"))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bundle_invalid",
    );
    let mut altered = members.clone();
    altered[3] = ("steps/s/cmd-1.stdout.log", b"tampered\n");
    let (altered_tar, altered_sha) = tar_of(&altered);
    let (status, body) = daemon.upload(run, &token, altered_tar, &altered_sha).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bundle_invalid",
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cmd-1.stdout.log"),
        "{body}"
    );
    let (huge, huge_sha) = tar_of(&[("report.md", &[b'x'; 20 * 1024])]);
    let (status, body) = daemon.upload(run, &token, huge, &huge_sha).await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "bundle_too_large",
    );
    for _ in 0..2 {
        let (status, body) = daemon.upload(run, &token, tar.clone(), &sha).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["files"], 5, "{body}");
    }
    assert_eq!(
        std::fs::read(dir.join("steps/s/cmd-1.stdout.log")).unwrap(),
        output
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("logs.txt")).unwrap(),
        "hello\nworld\nrun succeeded\n"
    );
    // A piece arriving after the upload (a stalled request) is not applied.
    let (status, body) = daemon
        .run_call(
            "remote-a",
            &token,
            &files,
            json!({ "files": [piece("logs.txt", 26, b"late\n")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["files"]["logs.txt"], 26, "{body}");
    assert_eq!(
        std::fs::read_to_string(dir.join("logs.txt")).unwrap(),
        "hello\nworld\nrun succeeded\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Once the run has ended, its token streams nothing more.
    let (status, body) = daemon
        .run_call(
            "remote-a",
            &token,
            &format!("/v1/worker/runs/{run}/complete"),
            json!({ "outcome": "succeeded" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = daemon
        .run_call(
            "remote-a",
            &token,
            &files,
            json!({ "files": [piece("logs.txt", 26, b"late\n")] }),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "lease_lost");
    let (status, body) = daemon.upload(run, &token, tar, &sha).await;
    assert_error(status, &body, StatusCode::CONFLICT, "lease_lost");
    daemon.stop().await;
}

#[tokio::test]
async fn cancel_takes_an_optional_reason_retry_an_optional_delay_and_projects_are_listed() {
    let daemon = Daemon::start().await;
    let id = daemon.create_task("Steered").await;
    let (status, body) = daemon
        .call(
            Method::POST,
            &format!("/v1/tasks/{id}/cancel"),
            Some(json!({ "reason": "not needed" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, task) = daemon
        .call(Method::GET, &format!("/v1/tasks/{id}"), None)
        .await;
    assert_eq!(task["task"]["status_reason"], "not needed", "{task:#}");
    // No body at all is the same as an empty one.
    let (status, body) = daemon
        .call(Method::POST, &format!("/v1/tasks/{id}/retry"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "queued");
    daemon
        .call(Method::POST, &format!("/v1/tasks/{id}/cancel"), None)
        .await;
    let (status, body) = daemon
        .call(
            Method::POST,
            &format!("/v1/tasks/{id}/retry"),
            Some(json!({ "delay_ms": 60_000 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "retry_wait");
    for (bad, field) in [
        (json!({ "delay_ms": "soon" }), "delay_ms"),
        (json!({ "delay_ms": 1u64 << 50 }), "delay_ms"),
        (json!({ "wait": 5 }), "wait"),
    ] {
        let (status, body) = daemon
            .call(Method::POST, &format!("/v1/tasks/{id}/retry"), Some(bad))
            .await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{body}"
        );
    }

    let (status, projects) = daemon.call(Method::GET, "/v1/projects", None).await;
    assert_eq!(status, StatusCode::OK, "{projects}");
    let projects = projects.as_array().unwrap();
    assert_eq!(projects.len(), 1);
    let path = std::fs::canonicalize(daemon.project()).unwrap();
    assert_eq!(projects[0]["path"], path.to_str().unwrap());
    let name = projects[0]["name"].as_str().unwrap().to_owned();
    for wanted in [name.as_str(), path.to_str().unwrap(), "1"] {
        let (status, list) = daemon
            .call(Method::GET, &format!("/v1/tasks?project={wanted}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert_eq!(list.as_array().unwrap().len(), 1, "{wanted}: {list}");
    }
    let (status, body) = daemon
        .call(Method::GET, "/v1/tasks?project=nope", None)
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    daemon.stop().await;
}

/// The `refused` events of a task.
async fn refusals(daemon: &Daemon, id: i64) -> Vec<Value> {
    let (_, events) = daemon
        .call(Method::GET, &format!("/v1/tasks/{id}/events"), None)
        .await;
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "refused")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_worker_cannot_heartbeat_complete_requeue_report_or_upload_for_a_run_it_did_not_claim() {
    let daemon = Daemon::start().await;
    let id = daemon.create_task("Claimed by a").await;
    let (claim, run, token) = daemon.claim_run("remote-a").await;
    assert_eq!(token.len(), 32, "{claim}");
    assert_ne!(token, run.to_string());
    let runs = |action: &str| format!("/v1/worker/runs/{run}/{action}");
    let piece = json!({ "path": "logs.txt", "offset": 0, "data": base64(b"forged\n") });
    let (tar, sha) = tar_of(&[("logs.txt", b"forged\n")]);
    // Worker b knows the run id; it tries with a made-up token and with a's own token.
    for presented in ["f".repeat(32), token.clone()] {
        for (action, body) in [
            ("heartbeat", json!({ "lease_ms": 30_000 })),
            ("complete", json!({ "outcome": "succeeded" })),
            ("requeue", json!({ "reason": "mine now" })),
            ("files", json!({ "files": [piece.clone()] })),
            ("usage", json!({ "records": [] })),
        ] {
            let (status, body) = daemon
                .run_call("remote-b", &presented, &runs(action), body)
                .await;
            assert_error(status, &body, StatusCode::FORBIDDEN, "not_lease_holder");
        }
        let (status, body) = daemon
            .upload_as("remote-b", run, &presented, tar.clone(), &sha)
            .await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "not_lease_holder");
    }
    // Nothing reached the run's bundle, and one refusal was recorded for all twelve requests.
    let logs = daemon.home.path().join(format!("runs/{id}/1/logs.txt"));
    assert!(!logs.exists(), "a forged piece was written");
    let refused = refusals(&daemon, id).await;
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["actor"], "remote-b");
    assert_eq!(refused[0]["data"]["run_owner"], "remote-a");
    assert!(
        !refused[0].to_string().contains(&token),
        "the secret is in an event"
    );
    let (_, got) = daemon
        .call(Method::GET, &format!("/v1/tasks/{id}"), None)
        .await;
    assert_eq!(got["task"]["status"], "running");
    assert!(
        !got.to_string().contains(&token),
        "the API shows the secret"
    );

    // A, the holder, still completes.
    let (status, done) = daemon
        .run_call(
            "remote-a",
            &token,
            &runs("complete"),
            json!({ "outcome": "succeeded" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "done");
    daemon.stop().await;
}

#[tokio::test]
async fn a_thousand_forged_requests_add_one_event_are_counted_and_the_real_worker_completes() {
    let daemon = Daemon::start().await;
    let id = daemon.create_task("Flooded").await;
    let (_, run, token) = daemon.claim_run("remote-a").await;
    let mut forged = Vec::new();
    for i in 0..1_000u32 {
        let (action, body) = if i % 2 == 0 {
            ("heartbeat", json!({ "lease_ms": 30_000 }))
        } else {
            ("complete", json!({ "outcome": "failed" }))
        };
        let made_up = format!("{i:032x}");
        let path = format!("/v1/worker/runs/{run}/{action}");
        let request = daemon
            .client
            .post(format!("{}{path}", daemon.base))
            .bearer_auth(&daemon.worker_token)
            .header(
                "x-orch-worker",
                if i % 3 == 0 { "remote-a" } else { "mallory" },
            )
            .header("x-orch-fencing-token", made_up)
            .json(&body);
        forged.push(tokio::spawn(read(request)));
        if forged.len() == 50 {
            for request in forged.drain(..) {
                let (status, _) = request.await.unwrap();
                assert_eq!(status, StatusCode::FORBIDDEN);
            }
        }
    }
    for request in forged {
        assert_eq!(request.await.unwrap().0, StatusCode::FORBIDDEN);
    }
    let refused = refusals(&daemon, id).await;
    assert_eq!(refused.len(), 1, "1,000 forgeries, one event: {refused:#?}");
    let (_, events) = daemon
        .call(Method::GET, &format!("/v1/tasks/{id}/events"), None)
        .await;
    assert!(events.as_array().unwrap().len() <= 4, "{events:#}");

    let metrics = daemon
        .client
        .get(format!("{}/metrics", daemon.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("orch_refused_requests_total{reason=\"not_holder\"} 1000"),
        "{metrics}"
    );

    let (status, done) = daemon
        .run_call(
            "remote-a",
            &token,
            &format!("/v1/worker/runs/{run}/complete"),
            json!({ "outcome": "succeeded" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    daemon.stop().await;
}

/// `POST /v1/tasks/{id}/kill` goes through the one app action: refused (409) when the task has
/// no live session, 404 for no task; with a live tmux session on the home's socket, the task is
/// cancelled and the session ended.
#[tokio::test]
async fn kill_refuses_a_task_with_no_live_session_and_ends_a_live_one() {
    let daemon = Daemon::start().await;
    let (status, created) = daemon
        .call(
            Method::POST,
            "/v1/tasks",
            Some(
                json!({ "project": daemon.project(), "title": "Long", "requires_approval": true }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    let kill = format!("/v1/tasks/{id}/kill");
    let (status, refused) = daemon.call(Method::POST, &kill, None).await;
    assert_error(status, &refused, StatusCode::CONFLICT, "conflict");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no live agent session"),
        "{refused}"
    );
    let (status, missing) = daemon.call(Method::POST, "/v1/tasks/999/kill", None).await;
    assert_error(status, &missing, StatusCode::NOT_FOUND, "not_found");

    // A live session named as orch names a task's, on the home's socket.
    let socket = daemon.home.path().join("tmux").join("socket");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let name = format!("orch-task-{id}");
    let started = std::process::Command::new("tmux")
        .arg("-S")
        .arg(&socket)
        .args(["new-session", "-d", "-s", &name, "sleep", "300"])
        .status()
        .expect("tmux is installed");
    assert!(started.success());
    let (status, killed) = daemon.call(Method::POST, &kill, None).await;
    assert_eq!(status, StatusCode::OK, "{killed}");
    let killed: orch_api::KilledSession = serde_json::from_value(killed).unwrap();
    assert_eq!(killed.status, "cancelled");
    assert_eq!(killed.session, name);
    let listed = std::process::Command::new("tmux")
        .arg("-S")
        .arg(&socket)
        .args(["has-session", "-t", &name])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "the session is still there");
    let (status, again) = daemon.call(Method::POST, &kill, None).await;
    assert_error(status, &again, StatusCode::CONFLICT, "conflict");
    let _ = std::process::Command::new("tmux")
        .arg("-S")
        .arg(&socket)
        .arg("kill-server")
        .status();
    daemon.stop().await;
}
