//! `POST /v1/worker/runs/{run}/plan` against the real daemon over a real SQLite store: a remote
//! worker's planner run creates its task's children once, however often the request is sent
//! (again, or many copies at once); a made-up token, another worker's name and a stale token
//! are refused and create nothing; a plan naming a parent or project of its own, or more
//! children than the daemon's `max_plan_children`, is refused with the reason; only a task with
//! a planner step may plan; the parent rests `blocked` on its children.

#![allow(clippy::unwrap_used)]

mod support;

use orch_core::{NewTask, TaskDraft, TaskSpec, TaskTitle};
use orch_server::{serve, ServeOptions};
use orch_store::{Op, SqliteOptions, Store, Submission};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

struct Plans {
    base: String,
    admin: String,
    worker: String,
    client: reqwest::Client,
}

impl Plans {
    async fn post(&self, worker: &str, token: &str, run: i64, body: &[u8]) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/v1/worker/runs/{run}/plan", self.base))
            .bearer_auth(&self.worker)
            .header("x-orch-worker", worker)
            .header("x-orch-fencing-token", token)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Claim as `worker`: the task's id, the run and its token.
    async fn claim(&self, worker: &str) -> (i64, i64, String) {
        let response = self
            .client
            .post(format!("{}/v1/worker/claim", self.base))
            .bearer_auth(&self.worker)
            .json(&json!({ "worker": worker, "lease_ms": 60_000, "wait_ms": 0 }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let claim: Value = response.json().await.unwrap();
        (
            claim["task"]["id"].as_i64().unwrap(),
            claim["run"].as_i64().unwrap(),
            claim["token"].as_str().unwrap().to_owned(),
        )
    }
}

fn task(title: &str, planned: bool) -> NewTask {
    let mut spec = TaskSpec::parse(TaskDraft {
        title: title.to_owned(),
        body: "the whole of it".to_owned(),
        labels: vec!["plan".to_owned(), "team".to_owned()],
        ..TaskDraft::default()
    })
    .unwrap();
    if planned {
        spec.steps =
            orch_core::planner::planned_steps(&TaskTitle::parse(title).unwrap(), &spec.body);
    }
    NewTask {
        spec,
        needs_in_batch: Vec::new(),
        needs_existing: Vec::new(),
        parent: None,
        parent_in_batch: None,
    }
}

fn plan_of(count: usize) -> Vec<u8> {
    let items: Vec<Value> = (0..count)
        .map(|i| json!({ "title": format!("Part {i}"), "body": "do it" }))
        .collect();
    serde_json::to_vec(&json!({ "tasks": items })).unwrap()
}

fn assert_refused(status: StatusCode, body: &Value, want: StatusCode, says: &str) {
    assert_eq!(status, want, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "`{message}` should say `{says}`");
}

#[tokio::test]
async fn a_planner_runs_plan_makes_its_children_once_fenced_checked_and_bounded() {
    let home = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config.toml"), "max_plan_children = 3\n").unwrap();
    std::fs::write(
        project.path().join(".orch.toml"),
        "default_agent = \"sim\"\n",
    )
    .unwrap();
    let store = Store::open_sqlite(&home.path().join("orch.db"), SqliteOptions::default())
        .await
        .unwrap();
    let registered = store
        .ensure_project(project.path().to_str().unwrap(), Op::now("test").now)
        .await
        .unwrap();
    let ids = store
        .submit(
            &Submission {
                project: registered.id,
                workflow: None,
                tasks: vec![task("Ship the widget", true), task("Just work", false)],
            },
            Op::now("test"),
        )
        .await
        .unwrap();
    let (planner, plain) = (ids[0].0, ids[1].0);

    let shutdown = CancellationToken::new();
    let mut options = ServeOptions::new(home.path());
    options.workers = 0;
    options.listen = Some("127.0.0.1:0".parse().unwrap());
    let handle = tokio::spawn(serve(store.clone(), options, shutdown.clone()));
    let addr = support::serve_addr(home.path(), &handle).await;
    let read = |name: &str| {
        std::fs::read_to_string(home.path().join(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let api = Plans {
        base: format!("http://{addr}"),
        admin: read("token"),
        worker: read("worker-token"),
        client: reqwest::Client::new(),
    };
    let mut runs = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let (task, run, token) = api.claim("remote-a").await;
        runs.insert(task, (run, token));
    }
    let (run, token) = runs[&planner].clone();
    let count = || async { api.get("/v1/status").await["total"].as_u64().unwrap() };

    // Refused, creating nothing: a made-up token, another worker's name, hostile plans.
    let (status, body) = api
        .post("remote-a", &"0".repeat(32), run, &plan_of(2))
        .await;
    assert_refused(status, &body, StatusCode::FORBIDDEN, "");
    assert_eq!(body["error"]["code"], "not_lease_holder", "{body}");
    let (status, body) = api.post("remote-b", &token, run, &plan_of(2)).await;
    assert_eq!(body["error"]["code"], "not_lease_holder", "{status} {body}");
    for (plan, says) in [
        (
            br#"{"tasks": [{"title": "Mine", "parent": 1}]}"#.to_vec(),
            "unknown field `parent`",
        ),
        (
            br#"{"project": 2, "tasks": [{"title": "Mine"}]}"#.to_vec(),
            "unknown field `project`",
        ),
        (plan_of(4), "at most 3 (max_plan_children)"),
        (b"{\"tasks\": [".to_vec(), "the plan file is not a plan"),
        (
            serde_json::to_vec(
                &json!({ "tasks": [{ "title": "t", "body": "x".repeat(300 * 1024) }] }),
            )
            .unwrap(),
            "keep it under",
        ),
    ] {
        let (status, body) = api.post("remote-a", &token, run, &plan).await;
        assert_refused(status, &body, StatusCode::UNPROCESSABLE_ENTITY, says);
    }
    // Only a planner's run plans.
    let (plain_run, plain_token) = runs[&plain].clone();
    let (status, body) = api
        .post("remote-a", &plain_token, plain_run, &plan_of(2))
        .await;
    assert_refused(status, &body, StatusCode::CONFLICT, "no planner step");
    assert_eq!(count().await, 2, "nothing was created");

    // The plan: created once; the same request again answers the same children.
    let (status, first) = api.post("remote-a", &token, run, &plan_of(2)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["created"], true, "{first}");
    let children = first["children"].clone();
    assert_eq!(children.as_array().unwrap().len(), 2, "{first}");
    let (status, again) = api.post("remote-a", &token, run, &plan_of(2)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["created"], false, "{again}");
    assert_eq!(again["children"], children);
    // Many copies at once (and a different plan under the same run) make nothing new.
    let api = std::sync::Arc::new(api);
    let mut copies = tokio::task::JoinSet::new();
    for copy in 0..6 {
        let (api, token) = (api.clone(), token.clone());
        copies.spawn(async move {
            api.post("remote-a", &token, run, &plan_of(1 + copy % 3))
                .await
        });
    }
    while let Some(answer) = copies.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["created"], false, "{body}");
        assert_eq!(body["children"], children);
    }
    assert_eq!(
        api.get("/v1/status").await["total"],
        4,
        "two children, once"
    );

    // The children are the planner's, in its project, with the project's default agent.
    for (index, child) in children.as_array().unwrap().iter().enumerate() {
        let detail = api.get(&format!("/v1/tasks/{child}")).await;
        assert_eq!(detail["task"]["parent"], planner, "{detail:#}");
        assert_eq!(detail["task"]["project"], registered.id.0, "{detail:#}");
        assert_eq!(
            detail["task"]["title"],
            format!("Part {index}"),
            "{detail:#}"
        );
        assert_eq!(detail["task"]["labels"], json!(["team"]), "{detail:#}");
        assert_eq!(detail["spec"]["steps"][0]["agent"], "sim", "{detail:#}");
    }

    // The run ends; the parent waits for its children; the old token plans nothing more.
    let response = api
        .client
        .post(format!("{}/v1/worker/runs/{run}/complete", api.base))
        .bearer_auth(&api.worker)
        .header("x-orch-worker", "remote-a")
        .header("x-orch-fencing-token", &token)
        .json(&json!({ "outcome": "succeeded", "reason": "planned" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let parent = api.get(&format!("/v1/tasks/{planner}")).await;
    assert_eq!(parent["task"]["status"], "blocked", "{parent:#}");
    let (status, body) = api.post("remote-a", &token, run, &plan_of(2)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "lease_lost", "{body}");
    assert_eq!(api.get("/v1/status").await["total"], 4);

    shutdown.cancel();
    handle.await.unwrap().unwrap();
}
