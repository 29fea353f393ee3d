//! GitHub webhooks through the real `orch serve` process configured by its flags: a delivery
//! sent twice creates one task; a bad signature creates nothing; a secret without a project
//! stops start-up.

use hmac::{Hmac, Mac};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::{poll_until, Home, Repo, SERVE_DEADLINE};

pub(crate) fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POST a GitHub delivery; the status and the JSON body.
pub(crate) fn deliver(
    url: &str,
    event: &str,
    delivery: &str,
    body: &[u8],
    signature: &str,
) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(url)
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("status {status}: not JSON ({e}): {text}"));
        (status, body)
    })
}

fn task_count(home: &Home) -> i64 {
    home.query_int("SELECT COUNT(*) FROM tasks")
}

#[test]
fn an_issue_delivered_twice_creates_one_task_and_a_bad_signature_creates_nothing() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# widgets\n")]);
    let secret = "e2e-webhook-secret";
    let secret_file = home.write("github-secret", &format!("{secret}\n"));
    let serve = home.serve(&[
        "--workers",
        "0",
        "--github-webhook-secret-file",
        secret_file.to_str().unwrap(),
        "--github-project",
        repo.path().to_str().unwrap(),
        "--github-handle",
        "@orch-bot",
    ]);
    let addr = poll_until("serve.addr", SERVE_DEADLINE, || {
        std::fs::read_to_string(home.path().join("serve.addr"))
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    });
    let url = format!("http://{addr}/v1/webhooks/github");
    let payload = json!({
        "action": "opened",
        "issue": {
            "number": 12, "title": "Fix the login test", "body": "It is flaky.",
            "html_url": "https://github.com/acme/widgets/issues/12", "state": "open",
            "labels": [{ "name": "orch" }], "user": { "login": "octocat" },
        },
        "repository": { "full_name": "acme/widgets" },
        "sender": { "login": "octocat" },
    })
    .to_string();

    let (status, body) = deliver(&url, "issues", "d-1", payload.as_bytes(), "sha256=00");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    assert_eq!(task_count(&home), 0);

    let signature = sign(secret, payload.as_bytes());
    let (status, first) = deliver(&url, "issues", "d-1", payload.as_bytes(), &signature);
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["outcome"], "created", "{first}");
    let (status, again) = deliver(&url, "issues", "d-1", payload.as_bytes(), &signature);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["outcome"], "duplicate", "{again}");
    assert_eq!(again["task"], first["task"]);
    assert_eq!(task_count(&home), 1);
    let task = home.task(first["task"].as_i64().unwrap());
    assert_eq!(task["task"]["title"], "Fix the login test", "{task:#}");
    let project = home.query_text("SELECT path FROM projects");
    assert_eq!(
        std::path::Path::new(&project),
        repo.path().canonicalize().unwrap()
    );

    // A comment mentioning the configured handle on an issue no task is linked to creates a
    // task; the default handle does not.
    let comment = |id: u64, text: &str| {
        json!({
            "action": "created",
            "issue": { "number": 13, "title": "Fix the login test", "labels": [] },
            "comment": { "id": id, "body": text, "user": { "login": "octocat" },
                         "html_url": "https://github.com/acme/widgets/issues/12#c" },
            "repository": { "full_name": "acme/widgets" },
            "sender": { "login": "octocat" },
        })
        .to_string()
    };
    let ignored = comment(1, "@orch please look");
    let (status, body) = deliver(
        &url,
        "issue_comment",
        "d-2",
        ignored.as_bytes(),
        &sign(secret, ignored.as_bytes()),
    );
    assert_eq!(status, 202, "{body}");
    let mention = comment(2, "@orch-bot please look");
    let (status, body) = deliver(
        &url,
        "issue_comment",
        "d-3",
        mention.as_bytes(),
        &sign(secret, mention.as_bytes()),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(task_count(&home), 2);

    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");
}

#[test]
fn a_webhook_secret_without_a_project_stops_serve_from_starting() {
    let home = Home::new();
    let secret_file = home.write("github-secret", "s3cret\n");
    let finished = home
        .serve(&[
            "--github-webhook-secret-file",
            secret_file.to_str().unwrap(),
        ])
        .finish(SERVE_DEADLINE);
    finished.expect_code(2, "orch serve with a secret but no project");
    assert!(
        finished.stderr.contains("--github-project"),
        "{}",
        finished.stderr
    );
    let empty = home.write("empty-secret", "\n");
    let finished = home
        .serve(&["--github-webhook-secret-file", empty.to_str().unwrap()])
        .finish(SERVE_DEADLINE);
    finished.expect_code(2, "orch serve with an empty secret file");
    assert!(finished.stderr.contains("empty"), "{}", finished.stderr);
}
