//! `GitHubWriter` against the fake GitHub: every outbox op does what it says on the forge, a
//! second send of the same op (a crash between the forge's answer and the outbox's `done`)
//! changes nothing, and failures are sorted into "try again" and "refused for good".

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use orch_core::forge::{
    managed_labels, marker, marker_comment, publish_op, ForgeFile, ForgeLink, ForgeOp, ForgeResult,
    ForgeSettings, MergeMethod, RepoSlug, TaskFacts,
};
use orch_core::{Status, TaskId};
use orch_forge::RetryPolicy;
use orch_github_fake::FakeGitHub;
use orch_server::forge_outbox::{ForgeWriter, SendError};
use orch_server::forge_writer::GitHubWriter;

const REPO: &str = "octo/widgets";

struct Setup {
    fake: FakeGitHub,
    settings: ForgeSettings,
    writer: GitHubWriter,
    _dir: tempfile::TempDir,
}

fn quick_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        request_timeout: Duration::from_secs(10),
        max_rate_limit_wait: Duration::from_secs(30),
        secondary_rate_limit_wait: Duration::from_millis(200),
        token_refresh_margin: Duration::from_secs(60),
    }
}

async fn setup() -> Setup {
    let fake = FakeGitHub::start().await;
    fake.create_repo(REPO);
    let token = fake.add_token("orch-bot");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let settings = ForgeFile {
        repo: Some(REPO.into()),
        api_base: Some(fake.url()),
        token_file: Some(token_file.display().to_string()),
        ..ForgeFile::default()
    }
    .check(None)
    .unwrap();
    Setup {
        fake,
        settings,
        writer: GitHubWriter::new(quick_policy()),
        _dir: dir,
    }
}

impl Setup {
    async fn send(&self, op: &ForgeOp) -> Result<ForgeResult, SendError> {
        self.writer
            .send(&RepoSlug::parse(REPO).unwrap(), &self.settings, op)
            .await
    }

    /// Send `op` twice; both answers must agree.
    async fn send_twice(&self, op: &ForgeOp) -> ForgeResult {
        let first = self.send(op).await.unwrap();
        let second = self.send(op).await.unwrap();
        assert_eq!(first, second, "a repeat finds what the first made");
        first
    }
}

fn facts(task: TaskId, status: Status, issue: u64) -> TaskFacts {
    TaskFacts {
        task,
        title: "Fix the widget".into(),
        status,
        status_reason: None,
        agents: vec!["sim".into()],
        complexity: Some("small".into()),
        runs: Vec::new(),
        cost_usd: 0.25,
        input_tokens: 10,
        output_tokens: 20,
        link: ForgeLink {
            repo: REPO.into(),
            issue: Some(issue),
            ..ForgeLink::default()
        },
    }
}

#[tokio::test]
async fn labels_are_made_once_and_moved_on_an_issue() {
    let s = setup().await;
    let ensure = ForgeOp::EnsureLabels {
        labels: managed_labels("orch", "plan"),
    };
    s.send_twice(&ensure).await;
    let names: Vec<String> = s.fake.labels(REPO).into_iter().map(|(n, _)| n).collect();
    for wanted in ["orch", "plan", "status:queued", "status:done"] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} in {names:?}");
    }
    let count = names.len();
    s.send(&ensure).await.unwrap();
    assert_eq!(s.fake.labels(REPO).len(), count, "no label made twice");

    let issue = s.fake.create_issue(REPO, "Fix it", "body", &["orch"]);
    s.send_twice(&ForgeOp::SetLabels {
        issue,
        add: vec!["status:queued".into()],
        remove: vec![],
    })
    .await;
    s.send_twice(&ForgeOp::SetLabels {
        issue,
        add: vec![
            "status:running".into(),
            "agent:sim".into(),
            "complexity:small".into(),
        ],
        remove: vec!["status:queued".into()],
    })
    .await;
    let mut labels = s.fake.issue_labels(REPO, issue);
    labels.sort();
    assert_eq!(
        labels,
        ["agent:sim", "complexity:small", "orch", "status:running"]
    );
}

#[tokio::test]
async fn the_marker_comment_is_written_once_and_edited_in_place() {
    let s = setup().await;
    let issue = s.fake.create_issue(REPO, "Fix it", "body", &["orch"]);
    let task = TaskId(7);
    // Someone quoting the marker does not make their comment orch's.
    s.fake
        .add_comment(REPO, issue, "mallory", &format!("{}\nmine", marker(task)));
    let queued = ForgeOp::UpsertMarkerComment {
        issue,
        task,
        body: marker_comment(&facts(task, Status::Queued, issue)),
    };
    let ForgeResult::Comment { id } = s.send_twice(&queued).await else {
        panic!("a comment id")
    };
    let done = ForgeOp::UpsertMarkerComment {
        issue,
        task,
        body: marker_comment(&facts(task, Status::Done, issue)),
    };
    assert_eq!(s.send(&done).await.unwrap(), ForgeResult::Comment { id });
    let ours: Vec<_> = s
        .fake
        .comments(REPO, issue)
        .into_iter()
        .filter(|c| c.author == "orch-bot")
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0].id, id);
    assert!(ours[0].body.contains("status: `done`"), "{}", ours[0].body);
    assert_eq!(ours[0].edits.len(), 1, "edited once, in place");
}

#[tokio::test]
async fn a_pull_request_is_opened_once_even_when_its_answer_is_lost() {
    let s = setup().await;
    s.fake
        .commit_files(REPO, "orch/task-3", &[("NOTES.md", "notes\n")], "notes");
    let op = ForgeOp::CreatePullRequest {
        task: TaskId(3),
        head: "orch/task-3".into(),
        base: "main".into(),
        title: "Write the notes".into(),
        body: "Closes #1\n\nreport".into(),
        draft: true,
    };
    // The forge makes it but the answer is lost: the writer finds it instead of opening another.
    s.fake
        .lose_answers("POST /repos/{owner}/{repo}/pulls", 1, 502);
    let result = s.send(&op).await.unwrap();
    let ForgeResult::Pull { number, url } = result.clone() else {
        panic!("a pull: {result:?}")
    };
    assert!(url.contains(&format!("/pull/{number}")), "{url}");
    assert_eq!(s.send(&op).await.unwrap(), result);
    let pulls = s.fake.pulls(REPO);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert!(pulls[0].draft);
    assert_eq!(pulls[0].title, "Write the notes");
    assert!(pulls[0].body.as_deref().unwrap().contains("Closes #1"));
}

#[tokio::test]
async fn a_published_issue_is_created_once() {
    let s = setup().await;
    let op = publish_op(TaskId(9), "Local work", "Do the thing.", "orch").op;
    s.fake
        .lose_answers("POST /repos/{owner}/{repo}/issues", 1, 502);
    let result = s.send(&op).await.unwrap();
    let ForgeResult::Issue { number, .. } = result else {
        panic!("an issue: {result:?}")
    };
    assert_eq!(s.send(&op).await.unwrap(), result);
    let issues = s.fake.issues(REPO);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].number, number);
    assert_eq!(issues[0].labels, ["orch"]);
    assert!(issues[0]
        .body
        .as_deref()
        .unwrap()
        .contains(&marker(TaskId(9))));
}

#[tokio::test]
async fn sub_issues_closing_merging_and_branch_deletion_are_safe_to_repeat() {
    let s = setup().await;
    let parent = s.fake.create_issue(REPO, "Parent", "", &["orch"]);
    let child = s.fake.create_issue(REPO, "Child", "", &[]);
    s.send_twice(&ForgeOp::AddSubIssue { parent, child }).await;
    assert_eq!(s.fake.sub_issues(REPO, parent), [child]);

    s.send_twice(&ForgeOp::CloseIssue { issue: child }).await;
    assert_eq!(s.fake.issue(REPO, child).unwrap().state, "closed");

    let head = s
        .fake
        .commit_files(REPO, "orch/task-4", &[("a.txt", "a\n")], "a");
    let ForgeResult::Pull { number, .. } = s
        .send(&ForgeOp::CreatePullRequest {
            task: TaskId(4),
            head: "orch/task-4".into(),
            base: "main".into(),
            title: "A".into(),
            body: "b".into(),
            draft: false,
        })
        .await
        .unwrap()
    else {
        panic!("a pull")
    };
    // A merge for a head that moved on is refused for good.
    let stale = s
        .send(&ForgeOp::MergePull {
            pull: number,
            method: MergeMethod::Squash,
            head_sha: Some("0".repeat(40)),
        })
        .await
        .unwrap_err();
    assert!(matches!(stale, SendError::Refused(_)), "{stale:?}");
    s.send_twice(&ForgeOp::MergePull {
        pull: number,
        method: MergeMethod::Squash,
        head_sha: Some(head),
    })
    .await;
    let pull = s.fake.pull(REPO, number).unwrap();
    assert!(pull.merged);
    assert_eq!(pull.merge_method.as_deref(), Some("squash"));

    s.send_twice(&ForgeOp::DeleteBranch {
        branch: "orch/task-4".into(),
    })
    .await;
    assert_eq!(s.fake.branch_tip(REPO, "orch/task-4"), None);
}

#[tokio::test]
async fn failures_are_retried_or_refused_by_what_they_are() {
    let s = setup().await;
    // A forge that keeps failing: try again later.
    s.fake.fail_server_error(10, 503);
    let err = s.send(&ForgeOp::CloseIssue { issue: 1 }).await.unwrap_err();
    assert!(matches!(err, SendError::Retry { .. }), "{err:?}");
    s.fake.clear_faults();
    // A missing issue: refused for good.
    let err = s
        .send(&ForgeOp::CloseIssue { issue: 999 })
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Refused(_)), "{err:?}");
    // A rate limit longer than the client waits: try again after its reset.
    let reset = std::time::SystemTime::now() + Duration::from_secs(600);
    s.fake.primary_rate_limit_until(reset);
    let err = s.send(&ForgeOp::CloseIssue { issue: 1 }).await.unwrap_err();
    match err {
        SendError::Retry {
            after: Some(after), ..
        } => assert!(after > Duration::from_secs(500), "{after:?}"),
        other => panic!("a retry after the reset: {other:?}"),
    }
    s.fake.clear_faults();
    // No credentials: kept for later, saying what to set.
    let mut bare = s.settings.clone();
    bare.auth = None;
    let err = s
        .writer
        .send(
            &RepoSlug::parse(REPO).unwrap(),
            &bare,
            &ForgeOp::CloseIssue { issue: 1 },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::Retry { message, after: Some(_) } if message.contains("token_file")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_rotated_token_file_is_read_again_after_a_refusal() {
    let s = setup().await;
    let issue = s.fake.create_issue(REPO, "Fix it", "", &[]);
    s.send(&ForgeOp::CloseIssue { issue }).await.unwrap();
    // The old token is revoked and the file gets a new one.
    let auth = s.settings.auth.clone().unwrap();
    let orch_core::forge::ForgeAuth::TokenFile(path) = auth else {
        panic!("a token file")
    };
    let old = std::fs::read_to_string(&path).unwrap();
    s.fake.revoke_token(old.trim());
    let fresh = s.fake.add_token("orch-bot");
    std::fs::write(&path, fresh).unwrap();
    let refused = s.send(&ForgeOp::CloseIssue { issue }).await.unwrap_err();
    assert!(matches!(refused, SendError::Retry { .. }), "{refused:?}");
    s.send(&ForgeOp::CloseIssue { issue }).await.unwrap();
}
