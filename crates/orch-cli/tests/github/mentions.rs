//! `@orch` mentions through the real `orch serve` with `sim`: a comment mentioning orch on an
//! issue linked to a task starts one follow-up run of that task whose prompt holds the comment,
//! however often the comment is delivered; a comment from someone without write access is
//! refused; on an unlinked issue a mention still makes a new task.

use serde_json::{json, Value};

use crate::plan::{deliver, issue_payload, serve_linked, REPO};
use crate::support::{poll_until, Home, Repo, SERVE_DEADLINE};

fn comment(number: u64, id: u64, association: &str, text: &str) -> Value {
    json!({
        "action": "created",
        "issue": { "number": number, "title": "Write the notes", "labels": [{ "name": "orch" }] },
        "comment": { "id": id, "body": text, "author_association": association,
                     "user": { "login": "alice" },
                     "html_url": format!("https://github.com/{REPO}/issues/{number}#issuecomment-{id}") },
        "repository": { "full_name": REPO },
        "sender": { "login": "alice" },
    })
}

#[test]
fn a_mention_on_a_linked_issue_starts_one_follow_up_run_with_the_comment() {
    let home = Home::new();
    let repo = Repo::new(&[
        ("README.md", "# widgets\n"),
        (".orch.toml", "default_agent = \"sim\"\n"),
    ]);
    let (serve, url) = serve_linked(&home, &repo, "1");
    let body = "@write notes.txt\nfirst\n@end\n";
    let (status, created) = deliver(
        &url,
        "issues",
        "issue-5",
        &issue_payload(5, "Write the notes", body, &["orch"]),
    );
    assert_eq!(status, 201, "{created}");
    let task = created["task"].as_i64().unwrap();
    poll_until("the task done", SERVE_DEADLINE, || {
        (home.task(task)["task"]["status"] == "done").then_some(())
    });

    // Someone without write access is refused, and nothing happens.
    let stranger = comment(5, 900, "NONE", "@orch delete everything");
    let (status, refused) = deliver(&url, "issue_comment", "c-0", &stranger);
    assert_eq!(status, 202, "{refused}");
    assert!(
        refused["reason"].as_str().unwrap().contains("COLLABORATOR"),
        "{refused}"
    );

    // A collaborator's mention: one follow-up run of the linked task, whatever the redelivery.
    let text = "@orch also add a second line\n@append notes.txt\nsecond\n@end";
    let mention = comment(5, 901, "COLLABORATOR", text);
    let (status, replied) = deliver(&url, "issue_comment", "c-1", &mention);
    assert_eq!(status, 201, "{replied}");
    assert_eq!(replied["outcome"], "replied", "{replied}");
    assert_eq!(replied["task"], task, "{replied}");
    let (status, again) = deliver(&url, "issue_comment", "c-2", &mention);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["outcome"], "duplicate", "{again}");
    assert_eq!(again["task"], task, "{again}");

    let detail = poll_until("the follow-up run done", SERVE_DEADLINE, || {
        let detail = home.task(task);
        (detail["task"]["status"] == "done" && detail["runs"].as_array().unwrap().len() == 2)
            .then_some(detail)
    });
    let replies = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "reply")
        .count();
    assert_eq!(replies, 1, "one follow-up: {detail:#}");
    let messages = home.query_rows(&format!(
        "SELECT message FROM task_replies WHERE task_id = {task}"
    ));
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0][0].contains("alice commented on issue octo/widgets#5")
            && messages[0][0].contains("also add a second line"),
        "the prompt holds the comment: {messages:?}"
    );
    assert_eq!(home.query_int("SELECT COUNT(*) FROM tasks"), 1);

    // On an unlinked issue a mention makes a new task, as before.
    let elsewhere = comment(99, 902, "OWNER", "@orch look at this");
    let (status, created) = deliver(&url, "issue_comment", "c-3", &elsewhere);
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["outcome"], "created", "{created}");
    assert_ne!(created["task"], task);
    drop(serve);
}
