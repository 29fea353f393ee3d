use super::*;
use expect_test::expect;

fn facts() -> TaskFacts {
    TaskFacts {
        task: TaskId(42),
        title: "Fix the parser".into(),
        status: Status::Running,
        status_reason: None,
        agents: vec!["sim".into()],
        complexity: Some("medium".into()),
        runs: vec![
            RunFacts {
                attempt: 1,
                started_at: Timestamp(1_796_284_800_000),
                outcome: Some("failed: exit 1 | see\nlogs".into()),
            },
            RunFacts {
                attempt: 2,
                started_at: Timestamp(1_796_285_100_000),
                outcome: None,
            },
        ],
        cost_usd: 0.01234,
        input_tokens: 1200,
        output_tokens: 300,
        link: ForgeLink {
            repo: "octo/widgets".into(),
            issue: Some(7),
            pr_number: Some(9),
            pr_url: Some("https://github.com/octo/widgets/pull/9".into()),
            head_branch: Some("orch/task-42".into()),
            pushed_commit: Some("0123456789abcdef0123".into()),
            marker_comment_id: None,
        },
    }
}

#[test]
fn the_marker_comment_shows_state_runs_cost_and_links() {
    expect![[r#"
        <!-- orch:task 42 -->
        **orch task 42** · status: `running`

        Agent: sim · complexity: medium

        | run | started (UTC) | outcome |
        |---|---|---|
        | 1 | 2026-12-03 08:00 | failed: exit 1 / see logs |
        | 2 | 2026-12-03 08:05 | running |

        Cost: $0.0123 (1200 tokens in, 300 out)
        Links: pull request [#9](https://github.com/octo/widgets/pull/9) · branch `orch/task-42` · pushed `0123456789ab`
    "#]]
    .assert_eq(&marker_comment(&facts()));
    let fresh = TaskFacts {
        status: Status::Queued,
        agents: Vec::new(),
        complexity: None,
        runs: Vec::new(),
        link: ForgeLink::default(),
        status_reason: Some("waiting for\na worker".into()),
        ..facts()
    };
    expect![[r#"
        <!-- orch:task 42 -->
        **orch task 42** · status: `queued` (waiting for a worker)

        No run yet.

        Cost: $0.0123 (1200 tokens in, 300 out)
    "#]]
    .assert_eq(&marker_comment(&fresh));
}

#[test]
fn a_change_moves_the_status_label_and_adds_agent_and_complexity() {
    let check = |from: Option<Status>, facts: &TaskFacts| {
        let (add, remove) = label_change(from, facts);
        format!("+{add:?} -{remove:?}")
    };
    let out = [
        check(Some(Status::Queued), &facts()),
        check(Some(Status::Running), &facts()),
        check(
            None,
            &TaskFacts {
                status: Status::Queued,
                agents: Vec::new(),
                complexity: None,
                ..facts()
            },
        ),
    ];
    expect![[r#"
        [
            "+[\"status:running\", \"agent:sim\", \"complexity:medium\"] -[\"status:queued\"]",
            "+[\"status:running\", \"agent:sim\", \"complexity:medium\"] -[]",
            "+[\"status:queued\"] -[]",
        ]
    "#]]
    .assert_debug_eq(&out);
}

#[test]
fn a_linked_change_asks_for_labels_and_one_marker_edit_keyed_by_its_event() {
    let change = TaskChange {
        event: 17,
        from: Some(Status::Queued),
        facts: facts(),
    };
    let ops = ops_for_change(&change);
    let keys: Vec<&str> = ops.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["labels:task-42:event-17", "marker:task-42:event-17"]);
    assert!(
        matches!(&ops[1].op, ForgeOp::UpsertMarkerComment { issue: 7, body, .. }
        if body.starts_with("<!-- orch:task 42 -->"))
    );
    // A task with no issue writes nothing to the forge.
    let local = TaskChange {
        facts: TaskFacts {
            link: ForgeLink::default(),
            ..facts()
        },
        ..change
    };
    assert!(ops_for_change(&local).is_empty());
}

#[test]
fn managed_labels_cover_every_status_and_the_trigger() {
    let names: Vec<String> = managed_labels("orch", "plan")
        .into_iter()
        .map(|l| l.name)
        .collect();
    expect![[r#"
        [
            "orch",
            "plan",
            "status:waiting",
            "status:queued",
            "status:awaiting_approval",
            "status:running",
            "status:awaiting_input",
            "status:retry_wait",
            "status:blocked",
            "status:done",
            "status:failed",
            "status:needs_review",
            "status:cancelled",
        ]
    "#]]
    .assert_debug_eq(&names);
}

#[test]
fn ops_round_trip_through_json_and_finished_ones_update_the_link() {
    let op = publish_op(TaskId(5), "Title", "Body", "orch");
    let text = serde_json::to_string(&op.op).unwrap();
    assert!(
        text.starts_with(r#"{"op":"create_issue","task":5"#),
        "{text}"
    );
    let back: ForgeOp = serde_json::from_str(&text).unwrap();
    assert_eq!(back, op.op);
    assert_eq!(
        back.link_update(&ForgeResult::Issue {
            number: 3,
            url: None
        }),
        Some((TaskId(5), LinkUpdate::Issue { number: 3 }))
    );
    assert_eq!(back.link_update(&ForgeResult::Nothing), None);
    let ForgeOp::CreateIssue { body, .. } = &back else {
        panic!("{back:?}")
    };
    assert_eq!(body, "Body\n\n<!-- orch:task 5 -->");
}

#[test]
fn failed_ops_back_off_and_are_given_up_on() {
    let delays: Vec<Option<u64>> = (1..=MAX_OP_ATTEMPTS)
        .map(|n| op_retry_delay(n).map(|d| d.as_secs()))
        .collect();
    assert_eq!(
        delays,
        [
            Some(5),
            Some(10),
            Some(20),
            Some(40),
            Some(80),
            Some(160),
            Some(320),
            Some(640),
            Some(1280),
            None
        ]
    );
}

#[test]
fn repository_names_are_checked_like_github_does() {
    let out: Vec<String> = [
        "octo-org/widgets",
        "octo/widgets.git",
        "octo",
        "-octo/x",
        "octo/a b",
        "octo/..",
        "a/b/c",
    ]
    .iter()
    .map(|text| match RepoSlug::parse(text) {
        Ok(slug) => format!("ok {slug}"),
        Err(e) => e,
    })
    .collect();
    expect![[r#"
        [
            "ok octo-org/widgets",
            "ok octo/widgets",
            "`octo` is not `owner/repo`; write it as `owner/repo`, e.g. `octo-org/widgets`",
            "the owner `-octo` of `-octo/x` is not a GitHub user or organisation name (letters, digits and single hyphens, at most 39); write it as `owner/repo`, e.g. `octo-org/widgets`",
            "the repository name `a b` of `octo/a b` is not one GitHub allows (letters, digits, `-`, `_` and `.`, at most 100, one `/`); write it as `owner/repo`, e.g. `octo-org/widgets`",
            "the repository name `..` of `octo/..` is not one GitHub allows (letters, digits, `-`, `_` and `.`, at most 100, one `/`); write it as `owner/repo`, e.g. `octo-org/widgets`",
            "the repository name `b/c` of `a/b/c` is not one GitHub allows (letters, digits, `-`, `_` and `.`, at most 100, one `/`); write it as `owner/repo`, e.g. `octo-org/widgets`",
        ]
    "#]]
    .assert_debug_eq(&out);
}

#[test]
fn forge_settings_are_checked_with_the_key_and_the_fix() {
    let check = |text: &str| -> String {
        let file: ForgeFile = match serde_json::from_str(text) {
            Ok(file) => file,
            Err(e) => return format!("parse: {e}"),
        };
        let linked = RepoSlug::parse("octo/w").unwrap();
        let linked = (file.repo.as_deref() == Some("octo/other")).then_some(&linked);
        match file.check(linked) {
            Ok(s) => format!(
                "ok {} {} label={} auth={:?} merge={:?} rounds={}",
                s.repo, s.api_base, s.trigger_label, s.auth, s.auto_merge, s.round_limit
            ),
            Err(e) => e,
        }
    };
    let out: Vec<String> = [
        r#"{"repo": "octo/w"}"#,
        r#"{"repo": "octo/w", "api_base": "http://127.0.0.1:9/api/", "token_env": "GH_TOKEN", "auto_merge": "squash", "round_limit": 5}"#,
        r#"{}"#,
        r#"{"repo": "octo/w", "kind": "gitlab"}"#,
        r#"{"repo": "octo/w", "api_base": "https://user:pw@github.com"}"#,
        r#"{"repo": "octo/w", "token_env": "ghp_abc def"}"#,
        r#"{"repo": "octo/w", "token_env": "A", "token_file": "/t"}"#,
        r#"{"repo": "octo/w", "app_id": 1}"#,
        r#"{"repo": "octo/w", "auto_merge": "fast-forward"}"#,
        r#"{"repo": "octo/w", "round_limit": 0}"#,
        r#"{"repo": "octo/other"}"#,
    ]
    .iter()
    .map(|t| check(t))
    .collect();
    expect![[r#"
        [
            "ok octo/w https://api.github.com label=orch auth=None merge=None rounds=3",
            "ok octo/w http://127.0.0.1:9/api label=orch auth=Some(TokenEnv(\"GH_TOKEN\")) merge=Some(Squash) rounds=5",
            "forge.repo is missing; name the repository as `repo = \"owner/repo\"` (or run `orch init --repo owner/repo`)",
            "forge.kind: `kind = \"gitlab\"` is not a forge orch knows; use `github`",
            "forge.api_base: `https://user:pw@github.com` holds credentials; put the token in `token_file` or `token_env`, never in the URL",
            "forge.token_env: `ghp_abc def` is not an environment variable's name; write the variable's name (e.g. `GITHUB_TOKEN`), never the token itself",
            "forge: give one way to authenticate: `token_file`, `token_env`, or `app_id` + `private_key_file` + `installation_id`",
            "forge: a GitHub App needs all of `app_id`, `private_key_file` and `installation_id`",
            "forge.auto_merge: `fast-forward` is not a merge method; use `merge`, `squash`, `rebase`, or `off`",
            "forge.round_limit: 0 allows no follow-up run at all; set it to 1 or more (a task reaching the limit goes to `needs_review`)",
            "forge.repo is `octo/other` but the project is linked to `octo/w`; make them agree (`orch init --repo octo/other` relinks the project)",
        ]
    "#]]
    .assert_debug_eq(&out);
}
