//! Conditional requests, rate limits, retries and timeouts, with the requests the fake saw
//! counted.

use std::time::{Duration, Instant, SystemTime};

use orch_forge::{ForgeError, NewPull, RetryPolicy};

use crate::{fast_policy, setup, setup_with, REPO};

const ISSUE_ROUTE: &str = "GET /repos/{owner}/{repo}/issues/{number}";

#[tokio::test]
async fn a_repeated_read_is_revalidated_and_a_304_reuses_the_cached_body() {
    let (fake, forge, repo) = setup().await;
    let number = fake.create_issue(REPO, "cached", "body", &["orch"]);
    let first = forge.issue(&repo, number).await.expect("first");
    let second = forge.issue(&repo, number).await.expect("second");
    assert_eq!(first, second);
    assert_eq!(
        fake.request_count(ISSUE_ROUTE),
        2,
        "the second read was sent"
    );
    assert_eq!(fake.status_count(304), 1, "and answered 304 Not Modified");
    // A change is seen at once: the ETag no longer matches.
    fake.label_issue(REPO, number, "status:running");
    let third = forge.issue(&repo, number).await.expect("third");
    assert!(third.has_label("status:running"));
    assert_eq!(fake.status_count(304), 1);
}

#[tokio::test]
async fn a_primary_rate_limit_is_waited_out_until_the_reset_without_hammering() {
    let (fake, forge, repo) = setup().await;
    let number = fake.create_issue(REPO, "t", "", &[]);
    let reset_at = SystemTime::now() + Duration::from_millis(1500);
    fake.primary_rate_limit_until(reset_at);
    let started = Instant::now();
    forge
        .issue(&repo, number)
        .await
        .expect("answered after the reset");
    let waited = started.elapsed();
    assert_eq!(
        fake.request_count(ISSUE_ROUTE),
        2,
        "one refused request, one after the reset"
    );
    assert_eq!(fake.status_count(403), 1);
    assert!(
        waited >= Duration::from_millis(1400),
        "waited {waited:?} for the reset"
    );
    assert!(
        waited < Duration::from_secs(8),
        "waited {waited:?}, far longer than the reset"
    );
}

#[tokio::test]
async fn a_secondary_rate_limit_waits_retry_after() {
    let (fake, forge, repo) = setup().await;
    let number = fake.create_issue(REPO, "t", "", &[]);
    fake.fail_secondary_rate_limit(1, Some(1));
    let started = Instant::now();
    forge
        .issue(&repo, number)
        .await
        .expect("answered after Retry-After");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(fake.request_count(ISSUE_ROUTE), 2);
}

#[tokio::test]
async fn a_secondary_rate_limit_without_retry_after_backs_off_longer_each_time() {
    let (fake, forge, repo) = setup().await;
    let number = fake.create_issue(REPO, "t", "", &[]);
    fake.fail_secondary_rate_limit(2, None);
    let started = Instant::now();
    forge.issue(&repo, number).await.expect("answered");
    // 200 ms, then 400 ms (fast_policy's secondary wait, doubled).
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.request_count(ISSUE_ROUTE), 3);
}

#[tokio::test]
async fn a_rate_limit_past_the_allowed_wait_fails_at_once_with_the_reset() {
    let policy = RetryPolicy {
        max_rate_limit_wait: Duration::from_secs(2),
        ..fast_policy()
    };
    let (fake, forge, repo) = setup_with(policy).await;
    let number = fake.create_issue(REPO, "t", "", &[]);
    fake.primary_rate_limit_until(SystemTime::now() + Duration::from_secs(60));
    let started = Instant::now();
    let err = forge.issue(&repo, number).await.expect_err("rate limited");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it did not sleep first"
    );
    match err {
        ForgeError::RateLimited { until, .. } => {
            assert!(until > SystemTime::now() + Duration::from_secs(50));
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    // The next operation fails as clearly, without sending a request sure to be refused.
    assert!(err_text_is_clear(
        &forge.issue(&repo, number).await.expect_err("still limited")
    ));
    assert_eq!(fake.request_count(ISSUE_ROUTE), 1);
}

fn err_text_is_clear(err: &ForgeError) -> bool {
    err.to_string().contains("rate limited until")
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let (fake, forge, repo) = setup().await;
    let number = fake.create_issue(REPO, "t", "", &[]);
    fake.fail_server_error(2, 502);
    forge
        .issue(&repo, number)
        .await
        .expect("answered on the third try");
    assert_eq!(fake.request_count(ISSUE_ROUTE), 3);
}

#[tokio::test]
async fn server_errors_past_the_retry_budget_are_an_error() {
    let (fake, forge, repo) = setup().await;
    let number = fake.create_issue(REPO, "t", "", &[]);
    fake.fail_server_error(100, 500);
    let err = forge.issue(&repo, number).await.expect_err("fails");
    assert!(
        matches!(err, ForgeError::Server { status: 500, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(
        fake.request_count(ISSUE_ROUTE),
        4,
        "one try and three retries"
    );
}

#[tokio::test]
async fn a_new_comment_is_not_sent_again_after_a_server_error() {
    let (fake, forge, repo) = setup().await;
    let number = fake.create_issue(REPO, "t", "", &[]);
    fake.lose_answers(
        "POST /repos/{owner}/{repo}/issues/{number}/comments",
        1,
        502,
    );
    let err = forge
        .create_comment(&repo, number, "hello")
        .await
        .expect_err("the answer was lost");
    assert!(err.maybe_applied());
    assert_eq!(
        fake.request_count("POST /repos/{owner}/{repo}/issues/{number}/comments"),
        1
    );
    assert_eq!(
        fake.comments(REPO, number).len(),
        1,
        "the comment was made once, not retried"
    );
}

#[tokio::test]
async fn the_marker_comment_is_made_once_although_its_answer_was_lost() {
    let (fake, forge, repo) = setup().await;
    let number = fake.create_issue(REPO, "t", "", &[]);
    fake.lose_answers(
        "POST /repos/{owner}/{repo}/issues/{number}/comments",
        1,
        502,
    );
    let marker = "<!-- orch:task 5 -->";
    let comment = forge
        .upsert_marker_comment(&repo, number, marker, &format!("{marker} queued"))
        .await
        .expect("found after the lost answer");
    let comments = fake.comments(REPO, number);
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].id, comment.id);
}

#[tokio::test]
async fn a_pull_request_is_opened_once_although_its_answer_was_lost() {
    let (fake, forge, repo) = setup().await;
    fake.commit_files(REPO, "orch/1-x", &[("x", "x\n")], "x");
    fake.lose_answers("POST /repos/{owner}/{repo}/pulls", 1, 504);
    let new = NewPull {
        title: "x".into(),
        head: "orch/1-x".into(),
        base: "main".into(),
        body: Some("Closes #1".into()),
        draft: false,
    };
    let pull = forge
        .create_pull_once(&repo, &new)
        .await
        .expect("found after the lost answer");
    assert_eq!(fake.pulls(REPO).len(), 1);
    assert_eq!(fake.pulls(REPO)[0].number, pull.number);
    assert_eq!(
        fake.request_count("POST /repos/{owner}/{repo}/pulls"),
        1,
        "not sent twice"
    );
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retried() {
    let policy = RetryPolicy {
        request_timeout: Duration::from_millis(400),
        ..fast_policy()
    };
    let (fake, forge, repo) = setup_with(policy).await;
    let number = fake.create_issue(REPO, "t", "", &[]);
    fake.delay_next(1, Duration::from_secs(20));
    let started = Instant::now();
    forge
        .issue(&repo, number)
        .await
        .expect("answered on the retry");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.request_count(ISSUE_ROUTE), 2);
}

#[tokio::test]
async fn answers_slower_than_every_retry_are_a_timeout_error() {
    let policy = RetryPolicy {
        request_timeout: Duration::from_millis(300),
        max_retries: 1,
        ..fast_policy()
    };
    let (fake, forge, repo) = setup_with(policy).await;
    let number = fake.create_issue(REPO, "t", "", &[]);
    fake.delay_next(10, Duration::from_secs(5));
    let err = forge.issue(&repo, number).await.expect_err("too slow");
    assert!(matches!(err, ForgeError::Timeout { .. }), "{err:?}");
    assert_eq!(fake.request_count(ISSUE_ROUTE), 2);
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error_after_the_retries() {
    let (fake, forge, repo) = setup().await;
    drop(fake);
    // Give the listener a moment to close; then nothing answers on the port.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match forge.repository(&repo).await {
            Err(ForgeError::Transport(message)) => {
                assert!(
                    !message.contains("ghp_"),
                    "no credential in errors: {message}"
                );
                break;
            }
            other if Instant::now() > deadline => {
                panic!("expected a transport error, got {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn a_spent_quota_makes_the_next_request_wait_for_the_reset() {
    let (fake, forge, repo) = setup().await;
    let number = fake.create_issue(REPO, "t", "", &[]);
    fake.spend_quota(SystemTime::now() + Duration::from_millis(1200));
    forge
        .issue(&repo, number)
        .await
        .expect("answered, quota now spent");
    let started = Instant::now();
    forge
        .issue(&repo, number)
        .await
        .expect("answered after the reset");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        fake.status_count(403),
        0,
        "it waited instead of sending a request sure to fail"
    );
    assert_eq!(fake.request_count(ISSUE_ROUTE), 2);
}

#[tokio::test]
async fn a_rate_limited_comment_is_sent_again_once_the_limit_resets() {
    // A rate-limited request was not carried out, so even a non-idempotent POST is retried.
    let (fake, forge, repo) = setup().await;
    let number = fake.create_issue(REPO, "t", "", &[]);
    fake.fail_primary_rate_limit(1, SystemTime::now() + Duration::from_millis(500));
    forge
        .create_comment(&repo, number, "hello")
        .await
        .expect("sent after the reset");
    assert_eq!(fake.comments(REPO, number).len(), 1);
    assert_eq!(
        fake.request_count("POST /repos/{owner}/{repo}/issues/{number}/comments"),
        2
    );
}

#[tokio::test]
async fn a_secondary_rate_limit_answered_429_is_waited_out_too() {
    let (fake, forge, repo) = setup().await;
    fake.inject(orch_github_fake::Fault {
        kind: orch_github_fake::FaultKind::SecondaryRateLimit {
            retry_after: Some(1),
            status: 429,
        },
        remaining: Some(1),
        until: None,
        route: None,
    });
    forge
        .repository(&repo)
        .await
        .expect("answered after Retry-After");
    assert_eq!(fake.status_count(429), 1);
    assert_eq!(fake.request_count("GET /repos/{owner}/{repo}"), 2);
}

#[tokio::test]
async fn a_graphql_rate_limit_is_waited_out_until_the_reset() {
    let (fake, forge, repo) = setup().await;
    fake.commit_files(REPO, "orch/4", &[("x", "x\n")], "x");
    let pull = forge
        .create_pull(
            &repo,
            &NewPull {
                title: "x".into(),
                head: "orch/4".into(),
                base: "main".into(),
                body: None,
                draft: false,
            },
        )
        .await
        .expect("open");
    fake.inject(orch_github_fake::Fault {
        kind: orch_github_fake::FaultKind::GraphQlRateLimit {
            reset_at: SystemTime::now() + Duration::from_millis(1200),
        },
        remaining: Some(1),
        until: None,
        route: Some("POST /graphql".into()),
    });
    let started = Instant::now();
    let overview = forge
        .pull_overview(&repo, pull.number)
        .await
        .expect("after the reset");
    assert_eq!(overview.number, pull.number);
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.request_count("POST /graphql"), 2);
}

#[tokio::test]
async fn a_rate_limit_met_by_one_operation_holds_back_the_clients_other_operations() {
    let (fake, forge, repo) = setup().await;
    let first = fake.create_issue(REPO, "first", "", &[]);
    let second = fake.create_issue(REPO, "second", "", &[]);
    // The next request is refused with Retry-After: 2 s.
    fake.fail_secondary_rate_limit(1, Some(2));
    let started = Instant::now();
    let limited = {
        let forge = forge.clone();
        let repo = repo.clone();
        tokio::spawn(async move { forge.issue(&repo, first).await })
    };
    while fake.request_count(ISSUE_ROUTE) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Another operation of the same client (as the poller beside the writer) starts during
    // the wait: it sends nothing until the limit has passed.
    let other = forge
        .issue(&repo, second)
        .await
        .expect("answered after the limit");
    assert_eq!(other.number, second);
    assert!(
        started.elapsed() >= Duration::from_millis(1_800),
        "the other operation was answered after {:?}, inside the limit",
        started.elapsed()
    );
    limited
        .await
        .expect("join")
        .expect("answered after the limit");
    assert_eq!(fake.status_count(429) + fake.status_count(403), 1);
    assert_eq!(
        fake.request_count(ISSUE_ROUTE),
        3,
        "one refused request, then one per operation"
    );
}
