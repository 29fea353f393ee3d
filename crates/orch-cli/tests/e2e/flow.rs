//! Results that flow: a dependent task's worktree starts from its dependencies' branches (one as
//! is, several merged in `needs` order), a conflict fails it at claim time naming the files,
//! `from: base` opts out, and where a worktree started is in `job.json` and `orch task get`.

use serde_json::Value;

use crate::support::{read_json, read_text, workspace_of, Home, Repo};

/// A sim step that appends `line` to `file`.
fn append(file: &str, line: &str) -> String {
    format!(
        "      - name: append\n        agent: sim\n        prompt: |\n          Append a line.\n          @append {file}\n          {line}\n          @end\n"
    )
}

fn start_of(home: &Home, id: i64) -> Value {
    let task = home.task(id);
    assert_eq!(task["task"]["status"], "done", "task {id}: {task:#}");
    let start = task["start"].clone();
    let job = read_json(&home.run_dir(id, 1).join("job.json"));
    assert_eq!(job["start"], start, "job.json and `orch task get` agree");
    start
}

#[test]
fn a_chain_of_three_appends_builds_on_each_dependency_and_records_where_each_started() {
    let home = Home::new();
    let repo = Repo::new(&[("log.txt", "base\n")]);
    let base = repo.head();
    let yaml = format!(
        "name: chain\ndefaults:\n  retry: {{max_attempts: 1}}\ntasks:\n  - id: one\n    title: One\n    steps:\n{}  - id: two\n    title: Two\n    needs: [one]\n    steps:\n{}  - id: three\n    title: Three\n    needs: [two]\n    steps:\n{}",
        append("log.txt", "line one"),
        append("log.txt", "line two"),
        append("log.txt", "line three"),
    );
    let ids = home.submit("chain", &yaml, repo.path());
    home.serve_until_idle(2);

    let last = workspace_of(&home.run_dir(ids["three"], 1));
    assert_eq!(
        read_text(&last.join("log.txt")),
        "base\nline one\nline two\nline three\n",
        "the last task's worktree holds every edit once, in order"
    );
    let one = start_of(&home, ids["one"]);
    assert_eq!(one["from"], "base");
    assert_eq!(one["commit"], base.as_str());
    assert_eq!(one["branches"], serde_json::json!([]));
    let branch_of = |id: i64| {
        let branches = repo.git(&["branch", "--list", &format!("orch/{id}-*")]);
        let names: Vec<String> = branches
            .lines()
            .map(|l| l.trim_start_matches(['*', '+', ' ']).to_owned())
            .collect();
        assert_eq!(names.len(), 1, "task {id} owns one branch: {names:?}");
        names[0].clone()
    };
    for (key, dep) in [("two", "one"), ("three", "two")] {
        let start = start_of(&home, ids[key]);
        let dep_branch = branch_of(ids[dep]);
        assert_eq!(start["from"], "dependencies", "{key}: {start}");
        assert_eq!(start["branches"], serde_json::json!([dep_branch]), "{key}");
        assert_eq!(
            start["commit"].as_str(),
            Some(repo.git(&["rev-parse", &dep_branch]).as_str()),
            "{key} started at its dependency's final commit"
        );
        // Its own patch holds only its own line.
        let patch = read_text(&home.run_dir(ids[key], 1).join("patch.diff"));
        assert_eq!(patch.matches("\n+line").count(), 1, "{key}:\n{patch}");
    }
    // The human view names the start too.
    let shown = home.run(&["task", "get", &ids["three"].to_string()]);
    assert!(
        shown.stdout.contains("start:") && shown.stdout.contains("from dependencies"),
        "{}",
        shown.stdout
    );
    // The main checkout was never touched.
    assert_eq!(repo.head(), base);
    assert_eq!(repo.status(), "");
}

#[test]
fn a_diamond_joins_both_sides_and_from_base_opts_out() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let yaml = format!(
        "name: diamond\ndefaults:\n  retry: {{max_attempts: 1}}\ntasks:\n  - id: a\n    title: A\n    steps:\n{}  - id: b\n    title: B\n    needs: [a]\n    steps:\n{}  - id: c\n    title: C\n    needs: [a]\n    steps:\n{}  - id: d\n    title: D\n    needs: [b, c]\n    steps:\n{}  - id: e\n    title: E\n    needs: [b]\n    from: base\n    steps:\n{}",
        append("a.txt", "from a"),
        append("b.txt", "from b"),
        append("c.txt", "from c"),
        append("d.txt", "from d"),
        append("e.txt", "from e"),
    );
    let ids = home.submit("diamond", &yaml, repo.path());
    home.serve_until_idle(2);

    let d = workspace_of(&home.run_dir(ids["d"], 1));
    for (file, line) in [
        ("a.txt", "from a\n"),
        ("b.txt", "from b\n"),
        ("c.txt", "from c\n"),
        ("d.txt", "from d\n"),
    ] {
        assert_eq!(read_text(&d.join(file)), line, "d sees {file}");
    }
    let start = start_of(&home, ids["d"]);
    assert_eq!(start["from"], "dependencies");
    assert_eq!(
        start["branches"].as_array().map(Vec::len),
        Some(2),
        "{start}"
    );
    // The start of d is a merge of b's and c's branches.
    let commit = start["commit"].as_str().unwrap();
    let parents = repo.git(&["rev-list", "--parents", "-n", "1", commit]);
    assert_eq!(parents.split(' ').count(), 3, "a merge commit: {parents}");

    let e = workspace_of(&home.run_dir(ids["e"], 1));
    assert!(!e.join("a.txt").exists() && !e.join("b.txt").exists());
    assert_eq!(read_text(&e.join("e.txt")), "from e\n");
    let start = start_of(&home, ids["e"]);
    assert_eq!(start["from"], "base");
}

#[test]
fn conflicting_dependencies_fail_the_dependent_at_claim_time_naming_the_file() {
    let home = Home::new();
    let repo = Repo::new(&[("shared.txt", "base\n")]);
    let yaml = format!(
        "name: conflict\ndefaults:\n  retry: {{max_attempts: 3}}\ntasks:\n  - id: a\n    title: A\n    steps:\n{}  - id: b\n    title: B\n    steps:\n{}  - id: c\n    title: C\n    needs: [a, b]\n    steps:\n{}",
        append("shared.txt", "from a"),
        append("shared.txt", "from b"),
        append("c.txt", "from c"),
    );
    let ids = home.submit("conflict", &yaml, repo.path());
    home.serve_until_idle(2);

    let c = home.task(ids["c"]);
    assert_eq!(c["task"]["status"], "failed", "{c:#}");
    let reason = c["task"]["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("conflict") && reason.contains("shared.txt"),
        "the reason names the conflicting file: {reason}"
    );
    // Failed for good at once: one run, no step ran.
    assert_eq!(c["runs"].as_array().map(Vec::len), Some(1), "{c:#}");
    assert!(!home.run_dir(ids["c"], 1).join("steps/append").exists());
}

#[test]
fn a_lost_attempt_retried_on_another_home_keeps_its_branch_and_applies_each_step_once() {
    use crate::remote::{server_and_token, worker};
    use crate::support::{poll_until, SERVE_DEADLINE};
    use nix::sys::signal::Signal;

    let home = Home::new();
    let repo = Repo::new(&[
        ("log.txt", "base\n"),
        (".orch.toml", "allow_shell = true\n"),
    ]);
    let yaml = format!(
        "name: lost\ndefaults:\n  retry: {{max_attempts: 3, backoff: 0s, max_backoff: 0s, jitter: 0s}}\ntasks:\n  - id: work\n    title: Append lines\n    steps:\n{}      - name: half\n        exec:\n          - argv: [sh, -c, \"echo half >> log.txt && sleep 3\"]\n",
        append("log.txt", "one").replace("name: append", "name: one"),
    );
    let ids = home.submit("lost", &yaml, repo.path());
    let id = ids["work"];
    let serve = home.serve(&["--workers", "0", "--lease", "2s", "--grace", "1s"]);
    let (server, token) = server_and_token(&home);

    // Alpha finishes step `one`, appends half of step `half`, and is killed mid-step.
    let alpha_home = Home::new();
    let alpha = worker(&alpha_home, &server, &token, "alpha");
    let alpha_run = alpha_home.run_dir(id, 1);
    poll_until("step `half` to append on alpha", SERVE_DEADLINE, || {
        let logs = std::fs::read_to_string(alpha_run.join("logs.txt")).ok()?;
        logs.contains("$ sh").then_some(())?;
        let log = std::fs::read_to_string(workspace_of(&alpha_run).join("log.txt")).ok()?;
        log.contains("half").then_some(())
    });
    let alpha_branch = branch_of_workspace(&workspace_of(&alpha_run));
    assert_eq!(alpha.kill().code, None);

    let beta_home = Home::new();
    let beta = worker(&beta_home, &server, &token, "beta");
    poll_until("the task to be done", SERVE_DEADLINE, || {
        (home.task_status(id) == "done").then_some(())
    });
    // Beta's run is the last one (a run lost to a slow machine may come between).
    let attempt = home.query_int(&format!(
        "SELECT MAX(attempt) FROM runs WHERE task_id = {id} AND state = 'succeeded'"
    ));
    let beta_run = beta_home.run_dir(id, attempt as u32);
    let beta_tree = workspace_of(&beta_run);
    assert_ne!(beta_tree, workspace_of(&alpha_run), "another home");
    assert_eq!(
        read_text(&beta_tree.join("log.txt")),
        "base\none\nhalf\n",
        "each step's append exactly once: `one` kept from alpha's checkpoint, `half` redone"
    );
    assert_eq!(branch_of_workspace(&beta_tree), alpha_branch, "one branch");
    let branches = repo.git(&["branch", "--list", &format!("orch/{id}*")]);
    assert_eq!(branches.lines().count(), 1, "{branches}");
    let beta_logs = read_text(&beta_run.join("logs.txt"));
    assert!(
        beta_logs.contains("step 1 `one` was done by an earlier attempt"),
        "{beta_logs}"
    );
    // The daemon's copy of the last run's result (`orch task get`).
    let result = home.task(id)["result"].clone();
    assert_eq!(
        result["commit"].as_str(),
        Some(repo.git(&["rev-parse", &alpha_branch]).as_str()),
        "{result:#}"
    );
    assert_eq!(
        repo.git(&["show", &format!("{alpha_branch}:log.txt")]),
        "base\none\nhalf"
    );

    beta.signal(Signal::SIGTERM);
    beta.finish(SERVE_DEADLINE).expect_code(0, "orch worker");
    serve.signal(Signal::SIGTERM);
    serve.finish(SERVE_DEADLINE).expect_code(0, "orch serve");
}

/// The branch a worktree's `HEAD` names.
fn branch_of_workspace(worktree: &std::path::Path) -> String {
    crate::support::git(worktree, &["symbolic-ref", "--short", "HEAD"])
}
