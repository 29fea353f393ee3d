//! A project's own labels through the real `orch serve`: with `trigger_label = "bot"` an issue
//! delivered by webhook becomes a task only with the label `bot` (not `orch`), and the labels
//! orch ensures on the repository are the configured trigger and plan labels.

use crate::plan::{deliver, issue_payload, serve_linked};
use crate::support::{poll_until, Home, Repo, SERVE_DEADLINE};

#[test]
fn the_webhook_and_the_ensured_labels_use_the_projects_trigger_and_plan_labels() {
    let home = Home::new();
    let repo = Repo::new(&[
        ("README.md", "# widgets\n"),
        (
            ".orch.toml",
            "default_agent = \"sim\"\n\n[forge]\ntrigger_label = \"bot\"\nplan_label = \"split\"\n",
        ),
    ]);
    let (serve, url) = serve_linked(&home, &repo, "1");
    let body = "@write notes.txt\nfirst\n@end\n";
    let (status, ignored) = deliver(
        &url,
        "issues",
        "issue-1",
        &issue_payload(1, "Labelled orch", body, &["orch"]),
    );
    assert_eq!(status, 202, "{ignored}");
    assert!(
        ignored["reason"].as_str().unwrap().contains("`bot`"),
        "{ignored}"
    );
    let (status, created) = deliver(
        &url,
        "issues",
        "issue-2",
        &issue_payload(2, "Labelled bot", body, &["bot"]),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(home.query_int("SELECT COUNT(*) FROM tasks"), 1);

    let op = poll_until("the labels op enqueued", SERVE_DEADLINE, || {
        home.query_rows("SELECT op FROM forge_outbox WHERE idempotency_key LIKE 'ensure-labels:%'")
            .into_iter()
            .next()
            .map(|row| row[0].clone())
    });
    assert!(
        op.contains("\"name\":\"bot\"") && op.contains("\"name\":\"split\""),
        "{op}"
    );
    assert!(!op.contains("\"name\":\"plan\""), "{op}");
    assert!(!op.contains("\"name\":\"orch\""), "{op}");
    drop(serve);
}
