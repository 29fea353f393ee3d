//! Issue 14's unique keys, parents and children, tool recipes and approval policy, through the
//! real `orch` binary: a parent with three children continues only when all are done and sees
//! their results; a failed child sends it to `needs_review`; a second submit with a live key
//! returns the first (concurrent submits too, on both backends; the API answers 200); a tool
//! recipe with a wrong version or checksum fails at claim with that reason and no worktree; the
//! approval policy gates tasks, and approvals and rejections record the actor and comment.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::support::{
    int, on_both_backends, poll_until, read_json, read_text, task_events, Home, Repo,
    SERVE_DEADLINE,
};

fn exec(name: &str, argv: &[&str]) -> String {
    let argv: Vec<String> = argv.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "      - name: {name}\n        exec:\n          - argv: [{}]\n",
        argv.join(", ")
    )
}

fn event_at(task: &Value, kind: &str) -> i64 {
    let events = task_events(task, kind);
    let event = events
        .last()
        .unwrap_or_else(|| panic!("no `{kind}` event: {task:#}"));
    int(event, "id")
}

fn parent_with_three_children_continues_when_all_are_done_and_sees_their_results(home: Home) {
    let repo = Repo::new(&[("README.md", "# tree\n")]);
    // The parent is the first task of a fresh home (a workflow submits a parent before its
    // children), so its steps read their context at `scratch/1/context.json`.
    let context = home.path().join("scratch/1/context.json");
    let context = context.to_str().unwrap();
    let yaml = format!(
        "name: tree\ndefaults:\n  retry: {{max_attempts: 3, backoff: 100ms}}\ntasks:\n  - id: parent\n    title: Put the parts together\n    steps:\n{}  - id: one\n    title: Part one\n    parent: parent\n    steps:\n{}  - id: two\n    title: Part two\n    parent: parent\n    steps:\n{}  - id: three\n    title: Part three\n    parent: parent\n    steps:\n{}",
        exec("gather", &["cat", context]),
        exec("work", &["echo", "part one"]),
        exec("work", &["sleep", "0.5"]),
        exec("work", &["echo", "part three"]),
    );
    let ids = home.submit("tree", &yaml, repo.path());
    assert_eq!(ids["parent"], 1, "{ids:?}");
    let before = home.task(ids["parent"]);
    assert_eq!(before["task"]["status"], "blocked", "{before:#}");
    assert_eq!(
        before["task"]["status_reason"], "waits for its children: 0 of 3 done",
        "{before:#}"
    );
    // The tree view lists the children under their parent.
    let tree = home.run(&["task", "list", "--tree"]);
    tree.expect_code(0, "task list --tree");
    let lines: Vec<&str> = tree.stdout.lines().collect();
    let parent_line = lines
        .iter()
        .position(|l| l.contains("Put the parts together"))
        .unwrap();
    for (offset, part) in ["Part one", "Part two", "Part three"].iter().enumerate() {
        let line = lines[parent_line + 1 + offset];
        assert!(line.contains(&format!("└ {part}")), "{}", tree.stdout);
    }

    home.serve_until_idle(3);

    let parent = home.task(ids["parent"]);
    assert_eq!(parent["task"]["status"], "done", "{parent:#}");
    // Its first claim came after every child's completion.
    let parent_claimed = task_events(&parent, "claim")
        .iter()
        .map(|e| int(e, "id"))
        .min()
        .expect("the parent ran");
    for key in ["one", "two", "three"] {
        let child = home.task(ids[key]);
        assert_eq!(child["task"]["status"], "done", "{child:#}");
        assert_eq!(child["task"]["parent"], ids["parent"], "{child:#}");
        assert!(
            event_at(&child, "complete") < parent_claimed,
            "child {key} finished before the parent ran"
        );
    }
    assert!(task_events(&parent, "promote").len() == 1, "{parent:#}");
    // Its step saw the children's results in its context.
    let seen: Value = serde_json::from_str(&read_text(
        &home
            .run_dir(
                ids["parent"],
                parent["runs"].as_array().map_or(1, |r| r.len() as u32),
            )
            .join("steps/gather/cmd-1.stdout.log"),
    ))
    .expect("the step printed its context");
    let children = seen["children"]
        .as_array()
        .expect("children in the context");
    let titles: Vec<&str> = children
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Part one", "Part two", "Part three"]);
    for child in children {
        assert_eq!(child["status"], "done", "{child:#}");
        assert_eq!(child["result"]["status"], "succeeded", "{child:#}");
        let result_file = child["result_file"].as_str().unwrap();
        assert_eq!(
            read_json(std::path::Path::new(result_file))["task"],
            child["id"]
        );
    }
    home.assert_consistent("after the tree ran");
}

fn a_failed_child_sends_its_parent_to_needs_review(home: Home) {
    let repo = Repo::new(&[("README.md", "# tree\n")]);
    let yaml = format!(
        "name: tree\ndefaults:\n  retry: {{max_attempts: 1}}\ntasks:\n  - id: parent\n    title: Parent\n    steps:\n{}  - id: good\n    title: Good child\n    parent: parent\n    retry: {{max_attempts: 3, backoff: 100ms}}\n    steps:\n{}  - id: bad\n    title: Bad child\n    parent: parent\n    steps:\n{}",
        exec("never", &["echo", "the parent must not run"]),
        exec("work", &["true"]),
        exec("work", &["false"]),
    );
    let ids = home.submit("tree", &yaml, repo.path());
    home.serve_until_idle(2);
    let parent = home.task(ids["parent"]);
    assert_eq!(
        home.task_status(ids["good"]),
        "done",
        "{:#}",
        home.task(ids["good"])
    );
    assert_eq!(parent["task"]["status"], "needs_review", "{parent:#}");
    assert_eq!(
        parent["task"]["status_reason"],
        format!("child {} (`bad`) is failed", ids["bad"]),
        "{parent:#}"
    );
    assert_eq!(task_events(&parent, "child_failed").len(), 1, "{parent:#}");
    assert_eq!(parent["runs"], json!([]), "the parent never ran");
    assert_eq!(home.task_status(ids["bad"]), "failed");
    assert_eq!(home.task_status(ids["good"]), "done");
    home.assert_consistent("after a child failed");
}

fn a_second_submit_with_a_live_key_returns_the_first_even_when_racing(home: Home) {
    let repo = Repo::new(&[("README.md", "# keys\n")]);
    let project = repo.path().to_str().unwrap();
    let add = |title: &str| {
        vec![
            "task".to_owned(),
            "add".to_owned(),
            title.to_owned(),
            "--key".to_owned(),
            "nightly-build".to_owned(),
            "--project".to_owned(),
            project.to_owned(),
            "--json".to_owned(),
        ]
    };
    let first = home.json(&add("First").iter().map(String::as_str).collect::<Vec<_>>());
    let again = home.run(&[
        "task",
        "add",
        "Second",
        "--key",
        "nightly-build",
        "--project",
        project,
    ]);
    again.expect_code(0, "a second add with the key");
    assert!(
        again.stdout.contains(&format!(
            "task {} (queued) already holds the key `nightly-build`",
            first["id"]
        )),
        "{}",
        again.stdout
    );
    // Six submits at once of another key: one task.
    let racing: Vec<_> = (0..6)
        .map(|i| {
            let args = [
                "task",
                "add",
                &format!("Racer {i}"),
                "--key",
                "race",
                "--project",
                project,
                "--json",
            ]
            .map(str::to_owned);
            home.spawn(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .collect();
    let ids: BTreeSet<i64> = racing
        .into_iter()
        .map(|p| {
            let done = p.finish(SERVE_DEADLINE);
            done.expect_code(0, "a racing add");
            int(&done.json(), "id")
        })
        .collect();
    assert_eq!(ids.len(), 1, "one task for one key: {ids:?}");
    assert_eq!(
        home.query_int("SELECT COUNT(*) FROM tasks WHERE unique_key = 'race'"),
        1
    );
    // Once the first finishes, the key is free again.
    home.run(&["task", "cancel", &first["id"].to_string()])
        .expect_code(0, "cancel");
    let third = home.json(&add("Third").iter().map(String::as_str).collect::<Vec<_>>());
    assert_ne!(third["id"], first["id"]);
    home.assert_consistent("after the keyed submits");
}

/// POST JSON to the daemon's API with the home's admin token; the status and the body.
fn post(home: &Home, addr: &str, path: &str, body: &Value) -> (u16, Value) {
    let token = read_text(&home.path().join("token")).trim().to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("http://{addr}{path}"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
}

#[test]
fn the_api_answers_a_live_key_with_200_and_the_existing_task() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# keys\n")]);
    let serve = home.serve(&["--workers", "0"]);
    let addr = poll_until("serve.addr", SERVE_DEADLINE, || {
        std::fs::read_to_string(home.path().join("serve.addr"))
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    });
    let body = json!({
        "project": repo.path(), "title": "Deploy", "unique_key": "deploy-42",
    });
    let (created, first) = post(&home, &addr, "/v1/tasks", &body);
    assert_eq!(created, 201, "{first}");
    let (again, second) = post(&home, &addr, "/v1/tasks", &body);
    assert_eq!(again, 200, "{second}");
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["existing"], true);
    // A child through the API, and an approval with a comment and an actor.
    let (_, child) = post(
        &home,
        &addr,
        "/v1/tasks",
        &json!({"project": repo.path(), "title": "Part", "parent": first["id"], "requires_approval": true}),
    );
    assert_eq!(child["parent"], first["id"], "{child}");
    assert_eq!(home.task_status(int(&first, "id")), "blocked");
    let (approved, _) = post(
        &home,
        &addr,
        &format!("/v1/tasks/{}/approve", child["id"]),
        &json!({"comment": "looks right", "actor": "carol"}),
    );
    assert_eq!(approved, 200);
    let events = home.task(int(&child, "id"));
    let approve = task_events(&events, "approve")[0].clone();
    assert_eq!(approve["actor"], "api:carol", "{approve:#}");
    assert_eq!(approve["reason"], "looks right", "{approve:#}");
    serve.kill();
}

fn tool_recipes_that_do_not_match_fail_at_claim_with_no_worktree(home: Home) {
    let repo = Repo::new(&[("README.md", "# tools\n")]);
    let project = repo.path().to_str().unwrap();
    let version = home.write(
        "version.yml",
        "title: Needs a future git\ntools:\n  - name: git\n    version: \">=999.0\"\nsteps:\n  - exec:\n      - argv: [git, --version]\n",
    );
    let checksum = home.write(
        "checksum.yml",
        &format!(
            "title: Needs another git binary\ntools:\n  - name: git\n    sha256: \"{}\"\nsteps:\n  - exec:\n      - argv: [git, --version]\n",
            "0".repeat(64)
        ),
    );
    let fine = home.write(
        "fine.yml",
        "title: Needs any git\ntools:\n  - name: git\n    version: \">=1\"\nsteps:\n  - exec:\n      - argv: [git, --version]\n",
    );
    let add = |file: &std::path::Path| {
        int(
            &home.json(&[
                "task",
                "add",
                "-f",
                file.to_str().unwrap(),
                "--project",
                project,
                "--json",
            ]),
            "id",
        )
    };
    let (version, checksum, fine) = (add(&version), add(&checksum), add(&fine));
    home.serve_until_idle(1);
    for (id, expected) in [(version, "is version"), (checksum, "has sha256")] {
        let task = home.task(id);
        assert_eq!(task["task"]["status"], "failed", "{task:#}");
        let reason = task["task"]["status_reason"].as_str().unwrap();
        assert!(
            reason.starts_with("tool recipe: tool `git` at ") && reason.contains(expected),
            "{reason}"
        );
        assert_eq!(
            task["runs"].as_array().map(Vec::len),
            Some(1),
            "not retried: {task:#}"
        );
        let worktrees = home.path().join("worktrees");
        let made: Vec<String> = std::fs::read_dir(&worktrees)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            !made
                .iter()
                .any(|name| name.starts_with(&format!("{id}-")) || *name == id.to_string()),
            "no worktree for task {id}: {made:?}"
        );
    }
    assert_eq!(home.task_status(fine), "done");
}

fn the_approval_policy_gates_tasks_and_records_who_decided_and_why(home: Home) {
    let repo = Repo::new(&[(
        ".orch.toml",
        "[approval]\nlabels = [\"deploy:prod\"]\ncommands = [\"kubectl apply*\"]\n",
    )]);
    let project = repo.path().to_str().unwrap();
    let labelled = home.run(&[
        "task",
        "add",
        "Ship it",
        "-l",
        "deploy:prod",
        "--exec",
        "echo shipped",
        "--project",
        project,
        "--json",
    ]);
    labelled.expect_code(0, "add a deploy:prod task");
    let labelled_task = labelled.json();
    assert_eq!(
        labelled_task["status"], "awaiting_approval",
        "{labelled_task:#}"
    );
    assert!(
        labelled
            .stderr
            .contains("label `deploy:prod` matches the approval rule `deploy:prod`"),
        "{}",
        labelled.stderr
    );
    let command = home.json(&[
        "task",
        "add",
        "Apply",
        "--exec",
        "kubectl apply -f deploy.yml",
        "--project",
        project,
        "--json",
    ]);
    assert_eq!(command["status"], "awaiting_approval", "{command:#}");
    let plain = home.json(&[
        "task",
        "add",
        "Test",
        "--exec",
        "echo ok",
        "--project",
        project,
        "--json",
    ]);
    assert_eq!(plain["status"], "queued", "{plain:#}");

    let approve = home.spawn_with_env(
        &[
            "task",
            "approve",
            &labelled_task["id"].to_string(),
            "--comment",
            "change window open",
        ],
        &[("USER", "alice")],
    );
    approve.finish(SERVE_DEADLINE).expect_code(0, "approve");
    let reject = home.spawn_with_env(
        &[
            "task",
            "reject",
            &command["id"].to_string(),
            "--comment",
            "not on a Friday",
        ],
        &[("USER", "bob")],
    );
    reject.finish(SERVE_DEADLINE).expect_code(0, "reject");

    let approved = home.task(int(&labelled_task, "id"));
    assert_eq!(approved["task"]["status"], "queued");
    let event = task_events(&approved, "approve")[0].clone();
    assert_eq!(event["actor"], "cli:alice", "{event:#}");
    assert_eq!(event["reason"], "change window open", "{event:#}");
    let rejected = home.task(int(&command, "id"));
    assert_eq!(rejected["task"]["status"], "cancelled");
    let event = task_events(&rejected, "reject")[0].clone();
    assert_eq!(event["actor"], "cli:bob", "{event:#}");
    assert_eq!(event["reason"], "rejected: not on a Friday", "{event:#}");
    // A rejected task cannot be rejected again; the error says why.
    let again = home.run(&["task", "reject", &command["id"].to_string()]);
    assert_ne!(again.code, Some(0));
    assert!(
        again.stderr.contains("only a task waiting for approval"),
        "{}",
        again.stderr
    );
    home.assert_consistent("after approvals");
}

on_both_backends!(
    parent_with_three_children_continues_when_all_are_done_and_sees_their_results,
    a_failed_child_sends_its_parent_to_needs_review,
    a_second_submit_with_a_live_key_returns_the_first_even_when_racing,
    tool_recipes_that_do_not_match_fail_at_claim_with_no_worktree,
    the_approval_policy_gates_tasks_and_records_who_decided_and_why,
);
