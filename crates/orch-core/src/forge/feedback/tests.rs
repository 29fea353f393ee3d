use super::*;

const HEAD: &str = "a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0";

fn config() -> FeedbackConfig {
    FeedbackConfig {
        checks: true,
        reviews: true,
        conflicts: true,
        round_limit: 2,
        auto_merge: Some(MergeMethod::Squash),
        required_approvals: 1,
        delete_branch: true,
    }
}

fn pull() -> PullFacts {
    PullFacts {
        number: 5,
        state: PullState::Open,
        mergeable: Mergeability::Mergeable,
        head_sha: HEAD.into(),
        head_branch: "orch/task-1".into(),
        base_branch: "main".into(),
        checks: Vec::new(),
        reviews: Vec::new(),
        review_comments: Vec::new(),
    }
}

fn task() -> TaskFeedback {
    TaskFeedback {
        status: Status::Done,
        pushed_commit: Some(HEAD.into()),
        last_commit: Some(HEAD.into()),
        issue: Some(3),
        rounds: BTreeMap::new(),
        reacted: BTreeSet::new(),
    }
}

fn check(id: u64, name: &str, outcome: CheckOutcome, sha: &str) -> CheckFact {
    CheckFact {
        id: format!("check-run:{id}"),
        name: name.into(),
        head_sha: sha.into(),
        outcome,
        conclusion: match outcome {
            CheckOutcome::Failed => "failure".into(),
            CheckOutcome::Passed => "success".into(),
            CheckOutcome::Pending => String::new(),
        },
        excerpt: format!("{name}: assertion failed at src/lib.rs:3"),
    }
}

fn review(id: u64, author: &str, verdict: ReviewVerdict, body: &str) -> ReviewFact {
    ReviewFact {
        id,
        author: author.into(),
        verdict,
        body: body.into(),
    }
}

fn comment(id: u64, path: &str, line: u64, body: &str) -> ReviewCommentFact {
    ReviewCommentFact {
        id,
        review: Some(70),
        author: "alice".into(),
        path: path.into(),
        line: Some(line),
        body: body.into(),
    }
}

fn reacted(mut task: TaskFeedback, reaction: &Reaction) -> TaskFeedback {
    task.reacted.extend(reaction.causes().iter().cloned());
    if let Some(kind) = reaction.round() {
        *task.rounds.entry(kind).or_default() += 1;
    }
    task
}

#[test]
fn a_failing_check_starts_one_follow_up_with_its_name_and_log() {
    let mut pull = pull();
    pull.checks = vec![
        check(11, "build", CheckOutcome::Passed, HEAD),
        check(12, "test", CheckOutcome::Failed, HEAD),
    ];
    let reaction = decide(&pull, &task(), &config());
    let Reaction::FollowUp {
        kind,
        causes,
        prompt,
    } = &reaction
    else {
        panic!("{reaction:?}")
    };
    assert_eq!(*kind, RoundKind::Checks);
    assert_eq!(causes, &vec![format!("check:check-run:12@{HEAD}")]);
    assert!(prompt.contains("Check `test` (failure)"), "{prompt}");
    assert!(
        prompt.contains("assertion failed at src/lib.rs:3"),
        "{prompt}"
    );
    assert!(!prompt.contains("`build`"), "{prompt}");
    // Re-reading the same check does nothing more.
    let after = reacted(task(), &reaction);
    let again = decide(&pull, &after, &config());
    assert!(matches!(again, Reaction::Nothing { .. }), "{again:?}");
}

#[test]
fn checks_of_another_commit_and_a_stale_head_are_not_reacted_to() {
    let mut pull = pull();
    pull.checks = vec![check(12, "test", CheckOutcome::Failed, "0ld")];
    let reaction = decide(&pull, &task(), &config());
    // The old commit's failure is not this head's; the head is green otherwise: merge waits
    // for an approval.
    assert!(matches!(reaction, Reaction::Nothing { .. }), "{reaction:?}");

    let mut stale = task();
    stale.pushed_commit = Some("f00d".into());
    stale.last_commit = Some("f00d".into());
    pull.checks = vec![check(13, "test", CheckOutcome::Failed, HEAD)];
    let reaction = decide(&pull, &stale, &config());
    let Reaction::Nothing { why } = reaction else {
        panic!("{reaction:?}")
    };
    assert!(why.contains("not the task's last push"), "{why}");
}

#[test]
fn nothing_happens_while_the_task_runs() {
    let mut pull = pull();
    pull.checks = vec![check(12, "test", CheckOutcome::Failed, HEAD)];
    let mut running = task();
    running.status = Status::Running;
    assert!(matches!(
        decide(&pull, &running, &config()),
        Reaction::Nothing { .. }
    ));
}

#[test]
fn the_round_limit_sends_the_task_to_needs_review() {
    let mut pull = pull();
    pull.checks = vec![check(14, "test", CheckOutcome::Failed, HEAD)];
    let mut used = task();
    used.rounds.insert(RoundKind::Checks, 2);
    let reaction = decide(&pull, &used, &config());
    let Reaction::NeedsReview { causes, reason } = &reaction else {
        panic!("{reaction:?}")
    };
    assert_eq!(causes.len(), 1);
    assert!(reason.contains("round limit (2)"), "{reason}");
    // Another kind still has its rounds.
    pull.checks.clear();
    pull.reviews = vec![review(70, "alice", ReviewVerdict::ChangesRequested, "")];
    assert!(matches!(
        decide(&pull, &used, &config()),
        Reaction::FollowUp {
            kind: RoundKind::Reviews,
            ..
        }
    ));
}

#[test]
fn a_review_requesting_changes_starts_a_follow_up_with_file_and_line() {
    let mut pull = pull();
    pull.reviews = vec![review(
        70,
        "alice",
        ReviewVerdict::ChangesRequested,
        "Almost.",
    )];
    pull.review_comments = vec![
        comment(81, "src/lib.rs", 9, "Handle the empty case."),
        comment(80, "README.md", 2, "Typo."),
    ];
    let reaction = decide(&pull, &task(), &config());
    let Reaction::FollowUp {
        kind,
        causes,
        prompt,
    } = &reaction
    else {
        panic!("{reaction:?}")
    };
    assert_eq!(*kind, RoundKind::Reviews);
    assert_eq!(
        causes,
        &vec![
            "review:70".to_owned(),
            "review-comment:81".to_owned(),
            "review-comment:80".to_owned()
        ]
    );
    assert!(
        prompt.contains("alice requests changes:\nAlmost."),
        "{prompt}"
    );
    let readme = prompt.find("README.md:2 (alice):\nTypo.").expect(prompt);
    let lib = prompt
        .find("src/lib.rs:9 (alice):\nHandle the empty case.")
        .expect(prompt);
    assert!(readme < lib, "file order: {prompt}");
    // Once reacted to, the same review (still the reviewer's latest) blocks the merge instead.
    let after = reacted(task(), &reaction);
    let Reaction::Nothing { why } = decide(&pull, &after, &config()) else {
        panic!()
    };
    assert!(why.contains("alice still requests changes"), "{why}");
}

#[test]
fn nothing_is_decided_while_the_tasks_last_commit_is_not_pushed() {
    // A follow-up finished (the task is done again) but its commit is not on the pull request
    // yet: the approved, green head is the old one and must not be merged.
    let mut pull = pull();
    pull.checks = vec![check(15, "test", CheckOutcome::Passed, HEAD)];
    pull.reviews = vec![review(71, "alice", ReviewVerdict::Approved, "")];
    let mut task = task();
    task.last_commit = Some("f00d".repeat(10));
    let Reaction::Nothing { why } = decide(&pull, &task, &config()) else {
        panic!("decided on a stale head")
    };
    assert!(why.contains("not pushed yet"), "{why}");
    // An old failing check is not a new round either.
    pull.checks = vec![check(16, "test", CheckOutcome::Failed, HEAD)];
    assert!(matches!(
        decide(&pull, &task, &config()),
        Reaction::Nothing { .. }
    ));
    // Once pushed, the merge goes ahead.
    pull.checks = vec![check(15, "test", CheckOutcome::Passed, HEAD)];
    task.last_commit = None;
    assert!(matches!(
        decide(&pull, &task, &config()),
        Reaction::Merge { .. }
    ));
}

#[test]
fn an_approved_green_pull_request_is_merged_once_on_its_head() {
    let mut pull = pull();
    pull.checks = vec![check(15, "test", CheckOutcome::Passed, HEAD)];
    pull.reviews = vec![
        review(70, "alice", ReviewVerdict::ChangesRequested, "no"),
        review(71, "alice", ReviewVerdict::Approved, ""),
    ];
    let mut seen = task();
    seen.reacted.insert("review:70".into());
    let reaction = decide(&pull, &seen, &config());
    assert_eq!(
        reaction,
        Reaction::Merge {
            causes: vec![format!("merge:{HEAD}")],
            op: ForgeOp::MergePull {
                pull: 5,
                method: MergeMethod::Squash,
                head_sha: Some(HEAD.into()),
            },
        }
    );
    let after = reacted(seen.clone(), &reaction);
    assert!(matches!(
        decide(&pull, &after, &config()),
        Reaction::Nothing { .. }
    ));
    // A pending check, too few approvals, auto-merge off: no merge.
    let mut pending = pull.clone();
    pending
        .checks
        .push(check(16, "lint", CheckOutcome::Pending, HEAD));
    assert!(matches!(
        decide(&pending, &seen, &config()),
        Reaction::Nothing { .. }
    ));
    let two = FeedbackConfig {
        required_approvals: 2,
        ..config()
    };
    assert!(matches!(
        decide(&pull, &seen, &two),
        Reaction::Nothing { .. }
    ));
    let off = FeedbackConfig {
        auto_merge: None,
        ..config()
    };
    assert!(matches!(
        decide(&pull, &seen, &off),
        Reaction::Nothing { .. }
    ));
}

#[test]
fn a_conflict_starts_a_rebase_run() {
    let mut pull = pull();
    pull.mergeable = Mergeability::Conflicting;
    let reaction = decide(&pull, &task(), &config());
    let Reaction::FollowUp {
        kind: RoundKind::Conflict,
        prompt,
        ..
    } = &reaction
    else {
        panic!("{reaction:?}")
    };
    assert!(
        prompt.contains("conflicts with its base branch `main`"),
        "{prompt}"
    );
    let off = FeedbackConfig {
        conflicts: false,
        ..config()
    };
    assert!(matches!(
        decide(&pull, &task(), &off),
        Reaction::Nothing { .. }
    ));
}

#[test]
fn a_merged_pull_request_finishes_the_task_once() {
    let mut pull = pull();
    pull.state = PullState::Merged;
    let mut running = task();
    running.status = Status::Running;
    let reaction = decide(&pull, &running, &config());
    assert_eq!(
        reaction,
        Reaction::Finish {
            causes: vec!["merged:pr-5".into()],
            reason: "pull request #5 was merged".into(),
            ops: vec![
                (
                    "finish:pr-5:close-issue-3".into(),
                    ForgeOp::CloseIssue { issue: 3 }
                ),
                (
                    "finish:pr-5:delete-branch".into(),
                    ForgeOp::DeleteBranch {
                        branch: "orch/task-1".into()
                    }
                ),
            ],
            delete_branch: true,
        }
    );
    let after = reacted(task(), &reaction);
    assert!(matches!(
        decide(&pull, &after, &config()),
        Reaction::Nothing { .. }
    ));
}

#[test]
fn a_pull_request_closed_unmerged_needs_review_once_the_task_is_done() {
    let mut pull = pull();
    pull.state = PullState::Closed;
    let mut running = task();
    running.status = Status::Running;
    assert!(matches!(
        decide(&pull, &running, &config()),
        Reaction::Nothing { .. }
    ));
    let reaction = decide(&pull, &task(), &config());
    let Reaction::NeedsReview { causes, reason } = &reaction else {
        panic!("{reaction:?}")
    };
    assert_eq!(causes, &vec!["closed:pr-5".to_owned()]);
    assert!(reason.contains("closed without being merged"));
    let after = reacted(task(), &reaction);
    assert!(matches!(
        decide(&pull, &after, &config()),
        Reaction::Nothing { .. }
    ));
}

#[test]
fn a_long_log_keeps_its_end() {
    let mut pull = pull();
    let mut failing = check(12, "test", CheckOutcome::Failed, HEAD);
    failing.excerpt = format!("{}THE END", "x".repeat(10_000));
    pull.checks = vec![failing];
    let Reaction::FollowUp { prompt, .. } = decide(&pull, &task(), &config()) else {
        panic!()
    };
    assert!(prompt.contains("THE END"));
    assert!(prompt.len() < MAX_EXCERPT_CHARS + 500, "{}", prompt.len());
}

#[test]
fn the_feedback_keys_are_checked() {
    let file = ForgeFile {
        repo: Some("octo/widgets".into()),
        poll_interval: Some("5m".into()),
        react_to_reviews: Some(false),
        required_approvals: Some(2),
        auto_merge: Some("rebase".into()),
        ..ForgeFile::default()
    };
    let settings = file.check(None).unwrap();
    assert_eq!(settings.feedback.poll_interval, Duration::from_secs(300));
    let config = settings.feedback_config();
    assert!(config.checks && !config.reviews && config.conflicts);
    assert_eq!(config.required_approvals, 2);
    assert_eq!(config.auto_merge, Some(MergeMethod::Rebase));
    let bad = ForgeFile {
        poll_interval: Some("often".into()),
        ..file.clone()
    };
    let error = bad.check(None).unwrap_err();
    assert!(
        error.contains("forge.poll_interval") && error.contains("60s"),
        "{error}"
    );
    let zero = ForgeFile {
        poll_interval: Some("0s".into()),
        ..file
    };
    assert!(zero.check(None).is_err());
}

#[test]
fn a_merge_finishes_a_task_in_any_status_and_cancels_its_run() {
    use crate::plan::TaskFacts;
    for status in Status::ALL.into_iter().filter(|s| *s != Status::Done) {
        let running = status == Status::Running;
        let facts = TaskFacts {
            id: crate::TaskId(4),
            status,
            attempts_used: 1,
            max_attempts: 3,
            approved: false,
            requires_approval: false,
            retry: crate::RetryPolicy::default(),
            active_run: running.then_some(crate::RunId(9)),
            children: Vec::new(),
        };
        let plan = finish_merged(&facts, &merged_reason(5)).unwrap();
        assert_eq!(plan.status, Status::Done, "{status}");
        let ends_run = plan.effects.iter().any(|e| {
            matches!(e, Effect::EndRun { run, state: crate::model::RunState::Cancelled, outcome }
                if run.0 == 9 && outcome == "pull request #5 was merged")
        });
        assert_eq!(ends_run, running, "{status}");
    }
}
