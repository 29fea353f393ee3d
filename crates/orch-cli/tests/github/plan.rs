//! Issue 12's `plan` label through the real `orch serve` with `sim` and the fake GitHub: an
//! issue labelled `orch` and `plan` becomes a task whose planner step writes a plan; orch makes
//! each item a child task (parent = the issue's task) and enqueues its issue and, once that is
//! open, its sub-issue link; sent by the daemon's own outbox sender, the fake holds
//! the child issues as sub-issues of the parent; the child issues delivered back by webhook are
//! linked to their tasks, not made new ones; the parent continues when its children are done
//! and its step sees their results; a bad plan sends the task to `needs_review`.

use hmac::{Hmac, Mac};
use orch_github_fake::FakeGitHub;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::{poll_until, Home, Process, Repo, SERVE_DEADLINE};

pub(crate) const REPO: &str = "octo/widgets";
pub(crate) const SECRET: &str = "e2e-github-secret";

/// A daemon with GitHub webhooks for `repo` (linked to `octo/widgets`), `workers` embedded
/// workers; its webhook URL.
pub(crate) fn serve_linked(home: &Home, repo: &Repo, workers: &str) -> (Process, String) {
    let project = repo.path().to_str().unwrap();
    home.json(&["init", project, "--repo", REPO, "--json"]);
    let secret_file = home.write("github-secret", &format!("{SECRET}\n"));
    let serve = home.serve(&[
        "--workers",
        workers,
        "--github-webhook-secret-file",
        secret_file.to_str().unwrap(),
        "--github-project",
        project,
    ]);
    let addr = home.serve_addr();
    (serve, format!("http://{addr}/v1/webhooks/github"))
}

/// POST a signed GitHub delivery; the status and the JSON answer.
pub(crate) fn deliver(url: &str, event: &str, delivery: &str, payload: &Value) -> (u16, Value) {
    let body = payload.to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    block_on(async {
        let response = reqwest::Client::new()
            .post(url)
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    })
}

pub(crate) fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// An `issues` `opened` payload as GitHub sends it.
pub(crate) fn issue_payload(number: u64, title: &str, body: &str, labels: &[&str]) -> Value {
    let labels: Vec<Value> = labels.iter().map(|l| json!({ "name": l })).collect();
    json!({
        "action": "opened",
        "issue": { "number": number, "title": title, "body": body, "labels": labels,
                   "html_url": format!("https://github.com/{REPO}/issues/{number}"),
                   "state": "open", "user": { "login": "octocat" } },
        "repository": { "full_name": REPO },
        "sender": { "login": "octocat" },
    })
}

fn ops(home: &Home) -> Vec<(String, String, i64)> {
    home.query_rows(
        "SELECT idempotency_key, state, COALESCE(task_id, 0) FROM forge_outbox ORDER BY id",
    )
    .into_iter()
    .map(|row| (row[0].clone(), row[1].clone(), row[2].parse().unwrap()))
    .collect()
}

fn children(home: &Home, parent: i64) -> Vec<(i64, String, String)> {
    home.query_rows(&format!(
        "SELECT id, status, json_extract(spec, '$.title') FROM tasks WHERE parent_id = {parent} ORDER BY id"
    ))
    .into_iter()
    .map(|row| (row[0].parse().unwrap(), row[1].clone(), row[2].clone()))
    .collect()
}

/// Wait until the planner's run of `parent` ended waiting for its children (they may be done
/// by then).
pub(crate) fn await_children(home: &Home, parent: i64) {
    poll_until(
        "the planner's run ended for the children",
        SERVE_DEADLINE,
        || {
            let first = home.task(parent);
            first["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "await_children")
                .then_some(())
        },
    );
}

/// The parent's second run (its `context.json` at `path`) saw both children done, and its
/// planner step as done by the earlier run.
pub(crate) fn assert_saw_children(path: &std::path::Path) {
    let context: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let seen = context["children"].as_array().unwrap();
    assert_eq!(seen.len(), 2, "{context:#}");
    assert_eq!(seen[0]["status"], "done", "{context:#}");
    assert_eq!(seen[0]["title"], "Part one", "{context:#}");
    assert_eq!(context["steps"][0]["name"], "plan", "{context:#}");
    assert!(
        context["steps"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("planned by an earlier run"),
        "{context:#}"
    );
    assert_eq!(context["steps"][1]["status"], "succeeded", "{context:#}");
}

pub(crate) const PLAN_BODY: &str = "Build both parts.\n\n@plan\n{\"tasks\": [{\"title\": \"Part one\", \"body\": \"@write one.txt\\nthe first part\\n@end\"}, {\"title\": \"Part two\", \"body\": \"@write two.txt\\nthe second part\\n@end\"}]}\n@end\n";

#[test]
fn a_plan_issue_becomes_child_tasks_and_sub_issues_and_the_parent_continues_with_their_results() {
    let fake = FakeGitHub::start_blocking();
    fake.create_repo(REPO);
    let token = fake.add_token("orch-bot");
    // The daemon's own outbox sender writes to the fake: its API, its git remote, a token file.
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("github-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config = format!(
        "default_agent = \"sim\"\n\n[forge]\napi_base = \"{}\"\nremote = \"{}\"\ntoken_file = \"{}\"\n",
        fake.url(),
        fake.clone_url(REPO),
        token_file.display(),
    );
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# widgets\n"), (".orch.toml", &config)]);
    let bare = format!("file://{}", fake.bare_path(REPO).display());
    repo.git(&["push", "-q", "--force", &bare, "main:main"]);
    let (serve, url) = serve_linked(&home, &repo, "2");
    let parent_issue = fake.create_issue(REPO, "Ship the widget", PLAN_BODY, &["orch", "plan"]);
    let payload = issue_payload(
        parent_issue,
        "Ship the widget",
        PLAN_BODY,
        &["orch", "plan"],
    );
    // 201, or 200 when the daemon's poller found the issue first (the same task either way).
    let (status, created) = deliver(&url, "issues", "plan-1", &payload);
    assert!(status == 201 || status == 200, "{status} {created}");
    let parent = created["task"].as_i64().unwrap();
    let spec = home.task(parent)["spec"].clone();
    assert_eq!(spec["steps"][0]["plan"], true, "{spec:#}");
    assert_eq!(spec["steps"][0]["agent"], "sim", "{spec:#}");

    // The planner runs; its plan becomes two children, and the parent rests blocked.
    let kids = poll_until("the planned children", SERVE_DEADLINE, || {
        let kids = children(&home, parent);
        (kids.len() == 2).then_some(kids)
    });
    assert_eq!(kids[0].2, "Part one");
    assert_eq!(kids[1].2, "Part two");
    let plan: Value = serde_json::from_slice(
        &std::fs::read(home.path().join(format!("runs/{parent}/1/plan.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(plan["tasks"][1]["title"], "Part two", "{plan}");
    await_children(&home, parent);

    // Each child's issue is enqueued once, keyed by the parent and the item.
    let issue_ops = poll_until("the child issue ops", SERVE_DEADLINE, || {
        let found: Vec<_> = ops(&home)
            .into_iter()
            .filter(|(key, _, _)| key.starts_with(&format!("plan:task-{parent}:")))
            .collect();
        (found.len() == 2).then_some(found)
    });
    assert_eq!(
        issue_ops
            .iter()
            .map(|(key, _, task)| (key.clone(), *task))
            .collect::<Vec<_>>(),
        vec![
            (format!("plan:task-{parent}:item-0"), kids[0].0),
            (format!("plan:task-{parent}:item-1"), kids[1].0),
        ]
    );

    // Sent by the daemon's outbox, the issues exist once and become sub-issues of the
    // parent's issue.
    let sub_issues = poll_until("the sub-issues in the fake", SERVE_DEADLINE, || {
        let subs = fake.sub_issues(REPO, parent_issue);
        (subs.len() == 2).then_some(subs)
    });
    // (The children may already have opened their pull requests, which GitHub lists as issues.)
    let issues: Vec<_> = fake
        .issues(REPO)
        .into_iter()
        .filter(|issue| !issue.is_pull)
        .collect();
    assert_eq!(issues.len(), 3, "no issue twice: {issues:?}");
    for (index, (kid, _, title)) in kids.iter().enumerate() {
        let link = &home.task(*kid)["forge"];
        let number = link["issue"].as_u64().unwrap_or_else(|| panic!("{link}"));
        assert_eq!(sub_issues[index], number);
        let issue = fake.issue(REPO, number).unwrap();
        assert_eq!(&issue.title, title);
        // Delivered back by webhook, the child's issue is its task's, not a new task.
        let payload = issue_payload(
            number,
            title,
            issue.body.as_deref().unwrap_or(""),
            &["orch"],
        );
        let (status, answer) = deliver(&url, "issues", &format!("child-{number}"), &payload);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["task"], *kid, "{answer}");
    }
    assert_eq!(home.query_int("SELECT COUNT(*) FROM tasks"), 3);

    // The children run; then the parent continues at its next step, seeing their results.
    let done = poll_until("the parent done", SERVE_DEADLINE, || {
        let detail = home.task(parent);
        (detail["task"]["status"] == "done").then_some(detail)
    });
    assert_eq!(done["runs"].as_array().unwrap().len(), 2, "{done:#}");
    for (kid, _, _) in &kids {
        assert_eq!(home.task(*kid)["task"]["status"], "done");
    }
    assert_saw_children(&home.path().join(format!("runs/{parent}/2/context.json")));
    drop(serve);
}

#[test]
fn a_bad_plan_sends_the_task_to_needs_review_with_the_reason() {
    let home = Home::new();
    let repo = Repo::new(&[
        ("README.md", "# widgets\n"),
        (".orch.toml", "default_agent = \"sim\"\n"),
    ]);
    let (serve, url) = serve_linked(&home, &repo, "1");
    let body = "@plan\n{\"tasks\": []}\n@end\n";
    let (status, created) = deliver(
        &url,
        "issues",
        "bad-plan",
        &issue_payload(7, "Plan nothing", body, &["orch", "plan"]),
    );
    assert_eq!(status, 201, "{created}");
    let task = created["task"].as_i64().unwrap();
    let detail = poll_until("the task needs review", SERVE_DEADLINE, || {
        let detail = home.task(task);
        (detail["task"]["status"] == "needs_review").then_some(detail)
    });
    let reason = detail["task"]["status_reason"].as_str().unwrap();
    let log = |file: &str| {
        std::fs::read_to_string(home.path().join(format!("runs/{task}/1/{file}")))
            .unwrap_or_default()
    };
    assert!(
        reason.contains("plan") && reason.contains("no tasks"),
        "the reason says what is wrong: {reason}\n{}\n{}",
        log("logs.txt"),
        log("steps/plan/prompt.md")
    );
    assert!(children(&home, task).is_empty());
    assert_eq!(detail["runs"].as_array().unwrap().len(), 1, "not retried");
    drop(serve);
}
