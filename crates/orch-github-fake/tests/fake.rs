//! The fake's own promises: pushes over HTTP need a valid token (given by a credential helper,
//! never in the URL), webhooks are signed like GitHub's, and the blocking variant works from
//! sync tests.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use orch_github_fake::FakeGitHub;

const REPO: &str = "octo/hello";

/// The credential helper, given to git through the environment (`GIT_CONFIG_*`): it prints the
/// token from `FAKE_GITHUB_TOKEN`, so the token is in no argv, URL or config file.
const HELPER: &str = "!f() { test \"$1\" = get && printf 'username=x-access-token\\npassword=%s\\n' \"$FAKE_GITHUB_TOKEN\"; }; f";

fn git(dir: &Path, home: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new("git");
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid");
    if let Some(token) = token {
        command
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "credential.helper")
            .env("GIT_CONFIG_VALUE_0", HELPER)
            .env("FAKE_GITHUB_TOKEN", token);
    }
    command.output().expect("run git")
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "git failed: {}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn a_push_over_http_needs_a_valid_token_from_a_credential_helper() {
    let fake = FakeGitHub::start_blocking();
    let url = fake.create_repo(REPO);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let token = fake.add_token("pusher");
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("home");

    // No credential: even a clone is refused.
    let refused = git(
        dir.path(),
        &home,
        None,
        &["clone", "--quiet", &url, "anonymous"],
    );
    assert!(
        !refused.status.success(),
        "a clone without a token must fail"
    );

    ok(git(
        dir.path(),
        &home,
        Some(&token),
        &["clone", "--quiet", &url, "work"],
    ));
    let work = dir.path().join("work");
    std::fs::write(work.join("change.txt"), "changed\n").expect("write");
    ok(git(&work, &home, Some(&token), &["add", "change.txt"]));
    ok(git(
        &work,
        &home,
        Some(&token),
        &["commit", "--quiet", "-m", "change"],
    ));
    ok(git(
        &work,
        &home,
        Some(&token),
        &["push", "--quiet", "origin", "HEAD:refs/heads/orch/1-change"],
    ));
    let local = ok(git(&work, &home, None, &["rev-parse", "HEAD"]));
    assert_eq!(fake.branch_tip(REPO, "orch/1-change"), Some(local.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let push = loop {
        if let Some(push) = fake.deliveries().into_iter().find(|d| d.event == "push") {
            break push;
        }
        assert!(Instant::now() < deadline, "no push event");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(push.payload["ref"], "refs/heads/orch/1-change");
    assert_eq!(push.payload["after"], local.as_str());
    assert_eq!(
        fake.file_at(REPO, "orch/1-change", "change.txt").as_deref(),
        Some("changed\n")
    );

    let config = std::fs::read_to_string(work.join(".git/config")).expect("config");
    assert!(!config.contains(&token), "the token is in no stored config");

    // A wrong or revoked token is refused.
    std::fs::write(work.join("change.txt"), "again\n").expect("write");
    ok(git(
        &work,
        &home,
        None,
        &["commit", "--quiet", "-am", "again"],
    ));
    let wrong = git(
        &work,
        &home,
        Some("ghp_wrong"),
        &["push", "--quiet", "origin", "HEAD:refs/heads/orch/1-change"],
    );
    assert!(!wrong.status.success());
    fake.revoke_token(&token);
    let revoked = git(
        &work,
        &home,
        Some(&token),
        &["push", "--quiet", "origin", "HEAD:refs/heads/orch/1-change"],
    );
    assert!(!revoked.status.success(), "a revoked token cannot push");
    assert_ne!(
        fake.branch_tip(REPO, "orch/1-change"),
        Some(ok(git(&work, &home, None, &["rev-parse", "HEAD"]))),
        "nothing was pushed with a bad token"
    );
}

#[test]
fn an_installation_token_pushes_only_until_it_expires() {
    let fake = FakeGitHub::start_blocking();
    let url = fake.create_repo(REPO);
    fake.register_app(
        7,
        orch_github_fake::TEST_APP_PUBLIC_KEY,
        Duration::from_secs(3600),
    );
    fake.install_app(7, "octo", &[REPO]);
    // Mint a token the way the client does, through the API.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let token = runtime.block_on(async {
        let jwt = {
            use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs();
            let claims = serde_json::json!({ "iat": now - 60, "exp": now + 540, "iss": "7" });
            let key = EncodingKey::from_rsa_pem(orch_github_fake::TEST_APP_PRIVATE_KEY.as_bytes())
                .expect("key");
            encode(&Header::new(Algorithm::RS256), &claims, &key).expect("sign")
        };
        let client = reqwest::Client::new();
        let installation: serde_json::Value = client
            .get(format!("{}/repos/{REPO}/installation", fake.url()))
            .bearer_auth(&jwt)
            .send()
            .await
            .expect("installation")
            .json()
            .await
            .expect("json");
        let minted: serde_json::Value = client
            .post(format!(
                "{}/app/installations/{}/access_tokens",
                fake.url(),
                installation["id"]
            ))
            .bearer_auth(&jwt)
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        minted["token"].as_str().expect("a token").to_owned()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    ok(git(
        dir.path(),
        dir.path(),
        Some(&token),
        &["clone", "--quiet", &url, "work"],
    ));
    fake.expire_installation_tokens();
    let expired = git(
        dir.path(),
        dir.path(),
        Some(&token),
        &["clone", "--quiet", &url, "again"],
    );
    assert!(
        !expired.status.success(),
        "an expired installation token is refused"
    );
}

#[tokio::test]
async fn webhooks_are_signed_like_githubs_and_sent_in_order() {
    let received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().expect("lock").push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook_url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let fake = FakeGitHub::start().await;
    fake.create_repo(REPO);
    fake.send_webhooks_to(&hook_url, "s3cret");
    let number = fake.create_issue(REPO, "Fix it", "body", &["orch"]);
    fake.add_comment(REPO, number, "octocat", "@orch please");

    let deadline = Instant::now() + Duration::from_secs(10);
    while received.lock().expect("lock").len() < 2 {
        assert!(Instant::now() < deadline, "the webhooks did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received = received.lock().expect("lock").clone();
    let events: Vec<&str> = received
        .iter()
        .map(|(headers, _)| headers["x-github-event"].to_str().expect("ascii"))
        .collect();
    assert_eq!(events, vec!["issues", "issue_comment"]);
    for (headers, body) in &received {
        let signature = headers["x-hub-signature-256"].to_str().expect("ascii");
        assert_eq!(signature, FakeGitHub::sign("s3cret", body));
        assert!(headers.contains_key("x-github-delivery"));
    }
    let issue_event: serde_json::Value = serde_json::from_slice(&received[0].1).expect("json");
    assert_eq!(issue_event["action"], "opened");
    assert_eq!(issue_event["issue"]["number"], number);
    assert_eq!(issue_event["issue"]["labels"][0]["name"], "orch");
    assert_eq!(issue_event["repository"]["full_name"], REPO);
    let comment_event: serde_json::Value = serde_json::from_slice(&received[1].1).expect("json");
    assert_eq!(comment_event["comment"]["body"], "@orch please");
    assert_eq!(
        fake.deliveries()
            .iter()
            .filter(|d| d.status == Some(200))
            .count(),
        2
    );
}

#[tokio::test]
async fn requests_without_a_token_are_refused_and_counted() {
    let fake = FakeGitHub::start().await;
    fake.create_repo(REPO);
    let client = reqwest::Client::new();
    let anonymous = client
        .get(format!("{}/repos/{REPO}", fake.url()))
        .send()
        .await
        .expect("answer");
    assert_eq!(anonymous.status(), 401);
    let token = fake.add_token("someone");
    let allowed = client
        .get(format!("{}/repos/{REPO}", fake.url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answer");
    assert_eq!(allowed.status(), 200);
    assert_eq!(fake.request_count("GET /repos/{owner}/{repo}"), 2);
    assert_eq!(fake.status_count(401), 1);
}

fn signed_jwt(key: &str, iat: u64, exp: u64, iss: &str) -> String {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let claims = serde_json::json!({ "iat": iat, "exp": exp, "iss": iss });
    let key = EncodingKey::from_rsa_pem(key.as_bytes()).expect("key");
    encode(&Header::new(Algorithm::RS256), &claims, &key).expect("sign")
}

#[tokio::test]
async fn app_jwts_that_are_expired_too_long_foreign_or_unsigned_are_refused() {
    let fake = FakeGitHub::start().await;
    fake.register_app(
        7,
        orch_github_fake::TEST_APP_PUBLIC_KEY,
        Duration::from_secs(60),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let key = orch_github_fake::TEST_APP_PRIVATE_KEY;
    let client = reqwest::Client::new();
    let status = |jwt: String| {
        let request = client.get(format!("{}/app", fake.url())).bearer_auth(jwt);
        async move { request.send().await.expect("answer").status().as_u16() }
    };
    assert_eq!(status(signed_jwt(key, now - 60, now + 540, "7")).await, 200);
    assert_eq!(
        status(signed_jwt(key, now - 700, now - 100, "7")).await,
        401,
        "expired"
    );
    assert_eq!(
        status(signed_jwt(key, now - 60, now + 3600, "7")).await,
        401,
        "longer than ten minutes"
    );
    assert_eq!(
        status(signed_jwt(key, now - 60, now + 540, "8")).await,
        401,
        "another app"
    );
    assert_eq!(
        status(signed_jwt(
            orch_github_fake::OTHER_PRIVATE_KEY,
            now - 60,
            now + 540,
            "7"
        ))
        .await,
        401,
        "another key"
    );
    let valid = signed_jwt(key, now - 60, now + 540, "7");
    let (head_and_payload, _) = valid.rsplit_once('.').expect("a JWT");
    assert_eq!(
        status(format!("{head_and_payload}.")).await,
        401,
        "no signature"
    );
}

#[tokio::test]
async fn a_push_to_a_pulls_head_sends_synchronize() {
    let fake = FakeGitHub::start().await;
    fake.create_repo(REPO);
    let token = fake.add_token("orch-bot");
    fake.commit_files(REPO, "orch/2-x", &[("x", "1\n")], "one");
    let created = reqwest::Client::new()
        .post(format!("{}/repos/{REPO}/pulls", fake.url()))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "title": "x", "head": "orch/2-x", "base": "main" }))
        .send()
        .await
        .expect("answer");
    assert_eq!(created.status(), 201);
    let tip = fake.commit_files(REPO, "orch/2-x", &[("x", "2\n")], "two");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let deliveries = fake.deliveries();
        let actions: Vec<(String, String)> = deliveries
            .iter()
            .filter(|d| d.event == "pull_request")
            .map(|d| {
                (
                    d.payload["action"].as_str().unwrap_or("").to_owned(),
                    d.payload["after"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        if actions.len() == 2 {
            assert_eq!(actions[0].0, "opened");
            assert_eq!(actions[1], ("synchronize".to_owned(), tip.clone()));
            assert_eq!(deliveries.iter().filter(|d| d.event == "push").count(), 2);
            break;
        }
        assert!(Instant::now() < deadline, "no synchronize: {actions:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
