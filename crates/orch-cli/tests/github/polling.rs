//! Issues found by polling become tasks exactly once, also when the same issue is delivered by
//! webhook too: both paths give the same task (the same key and delivery id), however often
//! the issue is polled or delivered. Pull request events only nudge the poller.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::feedback::{World, REPO, TOKEN_VAR};
use crate::support::{poll_until, SERVE_DEADLINE};

#[test]
fn a_polled_issue_and_a_webhook_of_it_make_one_task() {
    let world = World::new("");
    let (fake, home) = (&world.fake, &world.home);
    // Found by polling only (no webhook is configured yet).
    let polled = fake.create_issue(REPO, "Fix the parser", "It drops a line.", &["orch"]);
    // Not labelled: never a task.
    let unlabelled = fake.create_issue(REPO, "A question", "How?", &[]);
    let secret = "github-polling-secret";
    let secret_file = home.write("github-secret", &format!("{secret}\n"));
    let project = world.repo.path().to_str().unwrap().to_owned();
    let serve = home.spawn_with_env(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "0",
            "--github-webhook-secret-file",
            secret_file.to_str().unwrap(),
            "--github-project",
            &project,
        ],
        &[(TOKEN_VAR, world.token.as_str())],
    );
    let task_of = |issue: u64| {
        home.query_rows(&format!(
            "SELECT task_id FROM task_forge_links WHERE issue_number = {issue}"
        ))
        .first()
        .and_then(|row| row.first())
        .and_then(|id| id.parse::<i64>().ok())
    };
    let first = poll_until("the polled issue's task", SERVE_DEADLINE, || {
        task_of(polled)
    });
    let detail = home.task(first);
    assert_eq!(detail["forge"]["issue"], polled, "{detail:#}");
    assert_eq!(detail["task"]["title"], "Fix the parser", "{detail:#}");

    // From now on the fake delivers webhooks: a new issue arrives by webhook and is polled.
    let url = format!("http://{}/v1/webhooks/github", home.serve_addr());
    fake.send_webhooks_to(&url, secret);
    let both = fake.create_issue(REPO, "Add a changelog", "Keep one.", &["orch"]);
    let second = poll_until("the delivered issue's task", SERVE_DEADLINE, || {
        task_of(both)
    });
    // The webhook was answered (created, or a duplicate when the poller was first).
    let delivered = poll_until("the issue's delivery answered", SERVE_DEADLINE, || {
        fake.deliveries()
            .into_iter()
            .find(|d| d.event == "issues" && d.payload["issue"]["number"] == both)
            .and_then(|d| d.status)
    });
    assert!(matches!(delivered, 200 | 201), "{delivered}");
    // A label added later is delivered again (`labeled`): still the same task.
    fake.label_issue(REPO, both, "bug");
    let relabeled = poll_until("a labeled delivery answered", SERVE_DEADLINE, || {
        fake.deliveries()
            .into_iter()
            .filter(|d| d.event == "issues" && d.payload["issue"]["number"] == both)
            .nth(1)
            .and_then(|d| d.status)
    });
    assert_eq!(relabeled, 200, "the same task again");
    // A check run's event only nudges the poller: 202, no task.
    fake.add_check_run(
        REPO,
        "main",
        orch_github_fake::CheckRunSpec::completed("ci", "success"),
    );
    let nudged = poll_until("the check run's delivery answered", SERVE_DEADLINE, || {
        fake.deliveries()
            .into_iter()
            .find(|d| d.event == "check_run")
            .and_then(|d| d.status)
    });
    assert_eq!(nudged, 202);
    // Several polls later: one task per labelled issue, none for the other.
    std::thread::sleep(Duration::from_secs(3));
    assert_ne!(first, second);
    assert_eq!(home.query_int("SELECT COUNT(*) FROM tasks"), 2);
    assert_eq!(task_of(unlabelled), None);
    assert_eq!(task_of(both), Some(second));
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "serve after SIGTERM");
}
