//! Each operation against the fake, its state read back from the fake.

use orch_forge::{
    CheckConclusion, CheckStatus, ForgeError, IssueQuery, IssueState, IssueUpdate, Label,
    MergeMethod, Mergeable, NewIssue, NewPull, PullState, PullUpdate, RepoRef, ReviewDecision,
    ReviewState, RollupState, StateFilter,
};
use orch_github_fake::CheckRunSpec;

use crate::{setup, REPO};

fn label(name: &str, color: &str) -> Label {
    Label {
        name: name.into(),
        color: color.into(),
        description: None,
    }
}

fn new_pull(head: &str, title: &str, body: &str) -> NewPull {
    NewPull {
        title: title.into(),
        head: head.into(),
        base: "main".into(),
        body: Some(body.into()),
        draft: false,
    }
}

#[tokio::test]
async fn the_repository_names_its_default_branch_and_clone_url() {
    let (fake, forge, repo) = setup().await;
    let found = forge.repository(&repo).await.expect("repository");
    assert_eq!(found.full_name, REPO);
    assert_eq!(found.default_branch, "main");
    assert_eq!(found.clone_url, fake.clone_url(REPO));
    let missing = RepoRef::parse("octo/missing").expect("valid");
    assert!(matches!(
        forge.repository(&missing).await,
        Err(ForgeError::NotFound(_))
    ));
}

#[tokio::test]
async fn issues_are_listed_by_label_state_and_since_without_pull_requests() {
    let (fake, forge, repo) = setup().await;
    let first = fake.create_issue(REPO, "first", "body", &["orch"]);
    let _other = fake.create_issue(REPO, "other", "body", &["bug"]);
    let closed = fake.create_issue(REPO, "closed", "body", &["orch"]);
    fake.set_issue_state(REPO, closed, "closed");
    fake.commit_files(REPO, "feature", &[("a.txt", "a\n")], "a");
    let pull = forge
        .create_pull(&repo, &new_pull("feature", "a pull", "body"))
        .await
        .expect("pull");
    forge
        .add_labels(&repo, pull.number, &["orch".into()])
        .await
        .expect("label the pull");

    let query = IssueQuery {
        labels: vec!["orch".into()],
        ..IssueQuery::default()
    };
    let open: Vec<u64> = forge
        .list_issues(&repo, &query)
        .await
        .expect("list")
        .iter()
        .map(|i| i.number)
        .collect();
    assert_eq!(
        open,
        vec![first],
        "open issues labelled orch, no pull request"
    );

    let all = IssueQuery {
        labels: vec!["orch".into()],
        state: StateFilter::All,
        ..IssueQuery::default()
    };
    let numbers: Vec<u64> = forge
        .list_issues(&repo, &all)
        .await
        .expect("list")
        .iter()
        .map(|i| i.number)
        .collect();
    assert_eq!(numbers, vec![closed, first], "newest first");

    let later = IssueQuery {
        since: Some(std::time::SystemTime::now() + std::time::Duration::from_secs(3600)),
        state: StateFilter::All,
        ..IssueQuery::default()
    };
    assert!(forge
        .list_issues(&repo, &later)
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn more_issues_than_a_page_are_all_listed() {
    let (fake, forge, repo) = setup().await;
    for n in 0..130 {
        fake.create_issue(REPO, &format!("issue {n}"), "", &["orch"]);
    }
    let issues = forge
        .list_issues(&repo, &IssueQuery::default())
        .await
        .expect("list");
    assert_eq!(issues.len(), 130);
    assert_eq!(
        fake.request_count("GET /repos/{owner}/{repo}/issues"),
        2,
        "two pages of 100"
    );
}

#[tokio::test]
async fn an_issue_is_created_updated_and_closed() {
    let (fake, forge, repo) = setup().await;
    let new = NewIssue {
        title: "Do the thing".into(),
        body: Some("details".into()),
        labels: vec!["orch".into()],
        assignees: Vec::new(),
    };
    let issue = forge.create_issue(&repo, &new).await.expect("create");
    assert_eq!(issue.title, "Do the thing");
    assert!(issue.has_label("orch"));
    let updated = forge
        .update_issue(
            &repo,
            issue.number,
            &IssueUpdate {
                title: Some("Do the other thing".into()),
                body: Some("more".into()),
                state: None,
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.body.as_deref(), Some("more"));
    let closed = forge.close_issue(&repo, issue.number).await.expect("close");
    assert_eq!(closed.state, IssueState::Closed);
    let seen = fake.issue(REPO, issue.number).expect("the fake has it");
    assert_eq!(
        (seen.title.as_str(), seen.state.as_str()),
        ("Do the other thing", "closed")
    );
    let fetched = forge.issue(&repo, issue.number).await.expect("get");
    assert_eq!(fetched.state, IssueState::Closed);
}

#[tokio::test]
async fn an_issue_made_once_is_not_made_again() {
    let (fake, forge, repo) = setup().await;
    let new = NewIssue {
        title: "Published task".into(),
        body: Some("text\n\n<!-- orch:task 7 -->".into()),
        labels: vec!["orch".into()],
        assignees: Vec::new(),
    };
    let first = forge
        .create_issue_once(&repo, &new, "<!-- orch:task 7 -->")
        .await
        .expect("create");
    let again = forge
        .create_issue_once(&repo, &new, "<!-- orch:task 7 -->")
        .await
        .expect("create again");
    assert_eq!(first.number, again.number);
    assert_eq!(fake.issues(REPO).len(), 1);
    let unmarked = NewIssue {
        body: Some("no marker".into()),
        ..new
    };
    assert!(matches!(
        forge
            .create_issue_once(&repo, &unmarked, "<!-- orch:task 7 -->")
            .await,
        Err(ForgeError::Config(_))
    ));
}

#[tokio::test]
async fn labels_are_ensured_added_removed_and_set() {
    let (fake, forge, repo) = setup().await;
    let made = forge
        .ensure_label(&repo, &label("status:running", "#1d76db"))
        .await
        .expect("ensure");
    assert_eq!(made.color, "1d76db");
    // Ensuring again keeps the label and its colour.
    let again = forge
        .ensure_label(&repo, &label("status:running", "000000"))
        .await
        .expect("ensure again");
    assert_eq!(again.color, "1d76db");
    assert_eq!(
        fake.labels(REPO)
            .iter()
            .filter(|(name, _)| name == "status:running")
            .count(),
        1
    );

    let number = fake.create_issue(REPO, "t", "b", &["orch"]);
    forge
        .add_labels(
            &repo,
            number,
            &["status:running".into(), "agent:sim".into()],
        )
        .await
        .expect("add");
    forge
        .add_labels(&repo, number, &["status:running".into()])
        .await
        .expect("add twice");
    assert_eq!(
        fake.issue_labels(REPO, number),
        vec!["orch", "status:running", "agent:sim"]
    );
    forge
        .remove_label(&repo, number, "status:running")
        .await
        .expect("remove");
    forge
        .remove_label(&repo, number, "status:running")
        .await
        .expect("removing an absent label is fine");
    assert_eq!(fake.issue_labels(REPO, number), vec!["orch", "agent:sim"]);
    let set = forge
        .set_labels(&repo, number, &["orch".into(), "status:done".into()])
        .await
        .expect("set");
    assert_eq!(
        set.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        vec!["orch", "status:done"]
    );
    assert_eq!(fake.issue_labels(REPO, number), vec!["orch", "status:done"]);
}

#[tokio::test]
async fn the_marker_comment_is_written_once_then_edited_in_place() {
    let (fake, forge, repo) = setup().await;
    let number = fake.create_issue(REPO, "t", "b", &["orch"]);
    let marker = "<!-- orch:task 12 -->";
    // Someone else quotes the marker: it must not be taken for orch's comment.
    fake.add_comment(REPO, number, "mallory", &format!("{marker}\nfake state"));
    let first = forge
        .upsert_marker_comment(&repo, number, marker, &format!("{marker}\nstatus: queued"))
        .await
        .expect("write");
    let second = forge
        .upsert_marker_comment(&repo, number, marker, &format!("{marker}\nstatus: running"))
        .await
        .expect("edit");
    assert_eq!(first.id, second.id);
    // The same body again sends no edit.
    forge
        .upsert_marker_comment(&repo, number, marker, &format!("{marker}\nstatus: running"))
        .await
        .expect("unchanged");
    let comments = fake.comments(REPO, number);
    assert_eq!(
        comments.len(),
        2,
        "mallory's and one of orch's: {comments:?}"
    );
    let ours = comments
        .iter()
        .find(|c| c.author == "orch-bot")
        .expect("ours");
    assert_eq!(ours.body, format!("{marker}\nstatus: running"));
    assert_eq!(ours.edits, vec![format!("{marker}\nstatus: queued")]);
    let found = forge
        .find_marker_comment(&repo, number, marker)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.id, ours.id);
    let mallory = comments
        .iter()
        .find(|c| c.author == "mallory")
        .expect("mallory's");
    assert!(
        mallory.edits.is_empty(),
        "someone else's comment is never edited"
    );
}

#[tokio::test]
async fn a_plain_comment_is_created_listed_and_updated() {
    let (fake, forge, repo) = setup().await;
    let number = fake.create_issue(REPO, "t", "b", &[]);
    let comment = forge
        .create_comment(&repo, number, "hello")
        .await
        .expect("create");
    forge
        .update_comment(&repo, comment.id, "hello again")
        .await
        .expect("update");
    let listed = forge.list_comments(&repo, number).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].body, "hello again");
    assert_eq!(
        listed[0].user.as_ref().map(|u| u.login.as_str()),
        Some("orch-bot")
    );
}

#[tokio::test]
async fn sub_issues_are_added_once_and_listed() {
    let (fake, forge, repo) = setup().await;
    let parent = fake.create_issue(REPO, "parent", "", &["orch", "plan"]);
    let child_a = forge
        .create_issue(
            &repo,
            &NewIssue {
                title: "child a".into(),
                ..NewIssue::default()
            },
        )
        .await
        .expect("child a");
    let child_b = forge
        .create_issue(
            &repo,
            &NewIssue {
                title: "child b".into(),
                ..NewIssue::default()
            },
        )
        .await
        .expect("child b");
    forge
        .add_sub_issue(&repo, parent, child_a.id)
        .await
        .expect("add a");
    forge
        .add_sub_issue(&repo, parent, child_b.id)
        .await
        .expect("add b");
    forge
        .add_sub_issue(&repo, parent, child_a.id)
        .await
        .expect("adding again is fine");
    assert_eq!(
        fake.sub_issues(REPO, parent),
        vec![child_a.number, child_b.number]
    );
    let listed: Vec<u64> = forge
        .list_sub_issues(&repo, parent)
        .await
        .expect("list")
        .iter()
        .map(|i| i.number)
        .collect();
    assert_eq!(listed, vec![child_a.number, child_b.number]);
    // A number is not an id: the API refuses it rather than linking the wrong issue.
    assert!(matches!(
        forge.add_sub_issue(&repo, parent, 999_999).await,
        Err(ForgeError::Validation(_))
    ));
}

#[tokio::test]
async fn a_draft_pull_request_is_opened_once_per_head_and_updated() {
    let (fake, forge, repo) = setup().await;
    let tip = fake.commit_files(REPO, "orch/12-fix", &[("fix.txt", "fixed\n")], "fix");
    let new = NewPull {
        draft: true,
        ..new_pull("orch/12-fix", "Fix it", "Closes #1")
    };
    let pull = forge.create_pull_once(&repo, &new).await.expect("open");
    let again = forge
        .create_pull_once(&repo, &new)
        .await
        .expect("open again");
    assert_eq!(pull.number, again.number);
    assert!(pull.draft);
    assert_eq!(pull.head.branch, "orch/12-fix");
    assert_eq!(pull.head.sha, tip);
    assert_eq!(fake.pulls(REPO).len(), 1);
    // A plain create for the same head is refused by GitHub as a duplicate.
    assert!(matches!(
        forge.create_pull(&repo, &new).await,
        Err(ForgeError::Validation(_))
    ));

    let by_head = forge
        .list_pulls_by_head(&repo, "orch/12-fix", StateFilter::Open)
        .await
        .expect("by head");
    assert_eq!(
        by_head.iter().map(|p| p.number).collect::<Vec<_>>(),
        vec![pull.number]
    );
    assert!(forge
        .list_pulls_by_head(&repo, "orch/other", StateFilter::All)
        .await
        .expect("none")
        .is_empty());

    let updated = forge
        .update_pull(
            &repo,
            pull.number,
            &PullUpdate {
                title: Some("Fix it properly".into()),
                ..PullUpdate::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.title, "Fix it properly");
    let fetched = forge.pull(&repo, pull.number).await.expect("get");
    assert_eq!(fetched.mergeable, Some(true));
    assert_eq!(fetched.mergeable_state.as_deref(), Some("draft"));
}

#[tokio::test]
async fn merging_moves_the_remotes_base_branch_with_each_method() {
    let (fake, forge, repo) = setup().await;
    let issue = fake.create_issue(REPO, "the task", "", &["orch"]);
    for (n, method) in [MergeMethod::Merge, MergeMethod::Squash, MergeMethod::Rebase]
        .into_iter()
        .enumerate()
    {
        let branch = format!("orch/{n}");
        let file = format!("file{n}.txt");
        fake.commit_files(REPO, &branch, &[(&file, "one\n")], "one");
        fake.commit_files(REPO, &branch, &[(&file, "two\n")], "two");
        let body = if n == 0 {
            format!("Closes #{issue}")
        } else {
            "no link".into()
        };
        let pull = forge
            .create_pull(&repo, &new_pull(&branch, "change", &body))
            .await
            .expect("open");
        let before = fake.branch_tip(REPO, "main").expect("main");
        let outcome = forge
            .merge_pull(&repo, pull.number, method, Some(&pull.head.sha))
            .await
            .expect("merge");
        assert!(outcome.merged);
        let after = fake.branch_tip(REPO, "main").expect("main");
        assert_ne!(before, after, "{method:?} moved main");
        assert_eq!(outcome.sha.as_deref(), Some(after.as_str()));
        assert_eq!(fake.file_at(REPO, "main", &file).as_deref(), Some("two\n"));
        let seen = fake.pull(REPO, pull.number).expect("pull");
        assert!(seen.merged);
        assert_eq!(
            seen.merge_method,
            Some(format!("{method:?}").to_lowercase())
        );
        // Merging again is not an error.
        let again = forge
            .merge_pull(&repo, pull.number, method, None)
            .await
            .expect("merge again");
        assert!(again.merged);
    }
    assert_eq!(
        fake.issue(REPO, issue).expect("issue").state,
        "closed",
        "Closes #N closed it"
    );
}

#[tokio::test]
async fn a_stale_head_or_a_conflict_is_not_merged() {
    let (fake, forge, repo) = setup().await;
    fake.commit_files(REPO, "a", &[("same.txt", "a\n")], "a");
    fake.commit_files(REPO, "b", &[("same.txt", "b\n")], "b");
    let pull_a = forge
        .create_pull(&repo, &new_pull("a", "a", ""))
        .await
        .expect("a");
    let pull_b = forge
        .create_pull(&repo, &new_pull("b", "b", ""))
        .await
        .expect("b");
    assert!(matches!(
        forge
            .merge_pull(
                &repo,
                pull_a.number,
                MergeMethod::Squash,
                Some("0000000000000000000000000000000000000000")
            )
            .await,
        Err(ForgeError::Conflict { status: 409, .. })
    ));
    forge
        .merge_pull(&repo, pull_a.number, MergeMethod::Squash, None)
        .await
        .expect("merge a");
    let b = forge.pull(&repo, pull_b.number).await.expect("b");
    assert_eq!(b.mergeable, Some(false));
    assert_eq!(b.mergeable_state.as_deref(), Some("dirty"));
    let overview = forge
        .pull_overview(&repo, pull_b.number)
        .await
        .expect("overview");
    assert_eq!(overview.mergeable, Mergeable::Conflicting);
    assert!(matches!(
        forge
            .merge_pull(&repo, pull_b.number, MergeMethod::Merge, None)
            .await,
        Err(ForgeError::Conflict { status: 405, .. })
    ));
}

#[tokio::test]
async fn reviews_and_line_comments_are_read() {
    let (fake, forge, repo) = setup().await;
    fake.commit_files(REPO, "f", &[("src/lib.rs", "fn main() {}\n")], "f");
    let pull = forge
        .create_pull(&repo, &new_pull("f", "f", ""))
        .await
        .expect("open");
    let review = fake.add_review(
        REPO,
        pull.number,
        "reviewer",
        "CHANGES_REQUESTED",
        "please fix",
    );
    fake.add_review_comment(
        REPO,
        pull.number,
        Some(review),
        "reviewer",
        ("src/lib.rs", 1),
        "rename main",
    );
    let reviews = forge.reviews(&repo, pull.number).await.expect("reviews");
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].state, ReviewState::ChangesRequested);
    assert_eq!(reviews[0].body.as_deref(), Some("please fix"));
    let comments = forge
        .review_comments(&repo, pull.number)
        .await
        .expect("comments");
    assert_eq!(comments.len(), 1);
    assert_eq!(
        (
            comments[0].path.as_str(),
            comments[0].line,
            comments[0].body.as_str()
        ),
        ("src/lib.rs", Some(1), "rename main")
    );
    assert_eq!(comments[0].pull_request_review_id, Some(review));
}

#[tokio::test]
async fn check_runs_and_statuses_of_a_branch_are_read() {
    let (fake, forge, repo) = setup().await;
    let tip = fake.commit_files(REPO, "orch/7-x", &[("x", "x\n")], "x");
    fake.add_check_run(
        REPO,
        &tip,
        CheckRunSpec::completed("test", "failure").with_output(
            "2 tests failed",
            "summary",
            "assertion failed at src/lib.rs:3",
        ),
    );
    fake.add_check_run(REPO, &tip, CheckRunSpec::in_progress("lint"));
    fake.add_status(REPO, &tip, "ci/build", "pending", "building");
    fake.add_status(REPO, &tip, "ci/build", "success", "built");
    let runs = forge
        .check_runs(&repo, "orch/7-x")
        .await
        .expect("runs by branch name");
    assert_eq!(runs.len(), 2);
    let test = runs.iter().find(|run| run.name == "test").expect("test");
    assert_eq!(test.status, CheckStatus::Completed);
    assert_eq!(test.conclusion, Some(CheckConclusion::Failure));
    assert!(test
        .conclusion
        .as_ref()
        .is_some_and(CheckConclusion::is_failing));
    assert_eq!(
        test.output.text.as_deref(),
        Some("assertion failed at src/lib.rs:3")
    );
    let lint = runs.iter().find(|run| run.name == "lint").expect("lint");
    assert_eq!(
        (lint.status.clone(), lint.conclusion.clone()),
        (CheckStatus::InProgress, None)
    );
    let status = forge.combined_status(&repo, &tip).await.expect("status");
    assert_eq!(
        status.state, "success",
        "the latest status of each context counts"
    );
    assert_eq!(status.statuses.len(), 1);
}

#[tokio::test]
async fn the_pull_overview_follows_reviews_checks_and_merges() {
    let (fake, forge, repo) = setup().await;
    let tip = fake.commit_files(REPO, "orch/9", &[("n", "1\n")], "n");
    let pull = forge
        .create_pull(&repo, &new_pull("orch/9", "n", ""))
        .await
        .expect("open");
    let overview = forge
        .pull_overview(&repo, pull.number)
        .await
        .expect("overview");
    assert_eq!(overview.state, PullState::Open);
    assert_eq!(overview.mergeable, Mergeable::Mergeable);
    assert_eq!(overview.review_decision, None);
    assert_eq!(overview.checks, None);
    assert_eq!(overview.head_sha, tip);
    assert_eq!(
        (
            overview.head_ref_name.as_str(),
            overview.base_ref_name.as_str()
        ),
        ("orch/9", "main")
    );

    fake.add_check_run(REPO, &tip, CheckRunSpec::completed("test", "failure"));
    fake.add_review(REPO, pull.number, "reviewer", "CHANGES_REQUESTED", "no");
    let overview = forge
        .pull_overview(&repo, pull.number)
        .await
        .expect("overview");
    assert_eq!(overview.checks, Some(RollupState::Failure));
    assert_eq!(
        overview.review_decision,
        Some(ReviewDecision::ChangesRequested)
    );

    // A new push: the checks of the new head count; the reviewer approves it.
    let tip = fake.commit_files(REPO, "orch/9", &[("n", "2\n")], "n2");
    fake.add_check_run(REPO, &tip, CheckRunSpec::completed("test", "success"));
    fake.add_review(REPO, pull.number, "reviewer", "APPROVED", "ok");
    let overview = forge
        .pull_overview(&repo, pull.number)
        .await
        .expect("overview");
    assert_eq!(overview.head_sha, tip);
    assert_eq!(overview.checks, Some(RollupState::Success));
    assert_eq!(overview.review_decision, Some(ReviewDecision::Approved));
    assert_eq!(overview.merge_state_status, "CLEAN");

    forge
        .merge_pull(&repo, pull.number, MergeMethod::Squash, Some(&tip))
        .await
        .expect("merge");
    let overview = forge
        .pull_overview(&repo, pull.number)
        .await
        .expect("overview");
    assert_eq!(overview.state, PullState::Merged);
    assert!(matches!(
        forge.pull_overview(&repo, 999).await,
        Err(ForgeError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_deleted_branch_is_gone_and_deleting_it_again_is_no_error() {
    let (fake, forge, repo) = setup().await;
    fake.commit_files(REPO, "orch/3-old", &[("x", "x\n")], "x");
    forge
        .delete_branch(&repo, "orch/3-old")
        .await
        .expect("delete");
    assert_eq!(fake.branch_tip(REPO, "orch/3-old"), None);
    forge
        .delete_branch(&repo, "orch/3-old")
        .await
        .expect("delete again");
    assert!(fake.branch_tip(REPO, "main").is_some());
}

#[tokio::test]
async fn names_that_could_escape_the_repository_path_are_refused_or_encoded() {
    for bad in [
        "../etc",
        "octo/..",
        "octo",
        "octo/a b",
        "octo/hello/extra",
        "/hello",
        "octo/",
    ] {
        assert!(RepoRef::parse(bad).is_err(), "{bad} must be refused");
    }
    assert_eq!(
        RepoRef::parse("octo-org/hello.rs")
            .expect("valid")
            .to_string(),
        "octo-org/hello.rs"
    );
    // A label with a slash and a `?` stays one path segment.
    let (fake, forge, repo) = setup().await;
    let number = fake.create_issue(REPO, "t", "", &["a/b?c"]);
    forge
        .remove_label(&repo, number, "a/b?c")
        .await
        .expect("remove");
    assert!(fake.issue_labels(REPO, number).is_empty());
}
