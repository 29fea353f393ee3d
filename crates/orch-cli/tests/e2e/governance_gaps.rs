//! Governance gaps of issue 14 closed later: `orch doctor` on info requests that lost their
//! task (or tasks that lost their request), and more below.

use crate::support::{int, poll_until, Home, Process, Repo, SERVE_DEADLINE};

/// `orch task add ARGS --project <repo> --json`, a daemon with one worker, and the task
/// waiting in `awaiting_input`: its id and the daemon.
fn add_and_wait_for_input(home: &Home, repo: &Repo, args: &[&str]) -> (i64, Process) {
    let project = repo.path().to_str().expect("UTF-8 path");
    let mut all = vec!["task", "add"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--project", project, "--json"]);
    let id = int(&home.json(&all), "id");
    let serve = home.serve(&["--workers", "1"]);
    poll_until("the task awaits input", SERVE_DEADLINE, || {
        (home.task_status(id) == "awaiting_input").then_some(())
    });
    (id, serve)
}

/// A `sim` task that asks for `TOKEN` and waits in `awaiting_input` (the daemon stopped again).
fn awaiting_task(home: &Home, repo: &Repo) -> i64 {
    let args = [
        "Ask for a token",
        "--agent",
        "sim",
        "--body",
        "@ask TOKEN\n",
    ];
    let (id, serve) = add_and_wait_for_input(home, repo, &args);
    serve.kill();
    id
}

fn doctor(home: &Home) -> serde_json::Value {
    let finished = home.run(&["doctor", "--json", "--no-agents"]);
    finished.json()
}

fn problems_of(report: &serde_json::Value, task: i64) -> Vec<String> {
    report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter(|p| p["task"] == task)
        .map(|p| p["problem"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn doctor_flags_awaiting_input_without_a_request_and_an_open_request_without_the_status() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# doctor\n")]);
    let id = awaiting_task(&home, &repo);
    let report = doctor(&home);
    assert_eq!(report["ok"], true, "{report:#}");

    // The request is gone (closed by hand): no answer can reach the task.
    home.execute("UPDATE info_requests SET state = 'closed'");
    let report = doctor(&home);
    assert_eq!(report["ok"], false, "{report:#}");
    let problems = problems_of(&report, id);
    assert!(
        problems.iter().any(
            |p| p.contains("awaiting_input but has no open info request")
                && p.contains(&format!("orch task cancel {id}"))
                && p.contains(&format!("orch task retry {id}"))
        ),
        "{report:#}"
    );
    let text = home.run(&["doctor", "--no-agents"]);
    text.expect_code(1, "doctor with a problem");
    assert!(
        text.stdout
            .contains(&format!("task {id}: the task is awaiting_input")),
        "{}",
        text.stdout
    );

    // The reverse: the request open, the task somewhere else (here: put there by hand).
    home.execute("UPDATE info_requests SET state = 'open'");
    home.execute(&format!(
        "UPDATE tasks SET status = 'needs_review' WHERE id = {id}"
    ));
    let report = doctor(&home);
    let problems = problems_of(&report, id);
    assert!(
        problems.iter().any(
            |p| p.contains("still open although the task is needs_review")
                && p.contains("orch serve")
        ),
        "{report:#}"
    );

    // A cancel closes the request with the task: nothing to flag.
    home.execute(&format!(
        "UPDATE tasks SET status = 'awaiting_input' WHERE id = {id}"
    ));
    assert_eq!(doctor(&home)["ok"], true);
    home.json(&["task", "cancel", &id.to_string(), "--json"]);
    let report = doctor(&home);
    assert_eq!(report["ok"], true, "{report:#}");
}

/// A certificate-like secret the redactor knows only as an answered value.
const CERT: &str = "-----BEGIN KEY-----\nQm9ndXMta2V5LWZvci1vcmNoLWUyZQ-7731\n-----END KEY-----\n";

/// Step `fetch` asks for a file value and reads it; step `after` looks for it afterwards.
const FETCH_SH: &str = r#"set -e
"$1" ask --file CERT --reason "the deploy needs the key file" || exit $?
printf 'path: %s\n' "$CERT"
sha256sum < "$CERT" | cut -c1-64 | sed 's/^/cert sha256: /'
"#;
const AFTER_SH: &str = r#"printf 'fetch var: [%s]\n' "${CERT:-}"
if [ -e "$HOME/../inputs" ]; then echo "inputs: present"; ls -la "$HOME/../inputs"; else echo "inputs: gone"; fi
"#;

#[test]
fn a_file_answer_is_handed_over_only_during_its_step_and_left_nowhere_under_the_home() {
    use sha2::Digest;
    let home = Home::new();
    let repo = Repo::new(&[("fetch.sh", FETCH_SH), ("after.sh", AFTER_SH)]);
    let orch = crate::support::ORCH;
    home.write(
        "fetch.yml",
        &format!(
            "title: Fetch\nsteps:\n  - name: fetch\n    exec:\n      - argv: [\"bash\", \"fetch.sh\", \"{orch}\"]\n  - name: after\n    exec:\n      - argv: [\"bash\", \"after.sh\"]\n"
        ),
    );
    let file = home.path().join("fetch.yml");
    let (id, serve) =
        add_and_wait_for_input(&home, &repo, &["--file", file.to_str().expect("UTF-8")]);
    // The value comes from a file outside the home.
    let outside = tempfile::tempdir().expect("temp dir");
    let cert = outside.path().join("key.pem");
    std::fs::write(&cert, CERT).expect("write the key file");
    let answered = home.run(&[
        "task",
        "answer",
        &id.to_string(),
        &format!("CERT=@{}", cert.display()),
        "--json",
    ]);
    answered.expect_code(0, "orch task answer with a file");
    poll_until("the task is done", SERVE_DEADLINE, || {
        let status = home.task_status(id);
        assert!(
            !["failed", "needs_review", "cancelled"].contains(&status.as_str()),
            "{:#}",
            home.task(id)
        );
        (status == "done").then_some(())
    });
    serve.kill();

    let run = home.run_dir(id, 2);
    let fetched = crate::support::read_text(&run.join("steps/fetch/stdout.log"));
    // `KEY=@FILE` drops the file's final line break, as `KEY=-` does for stdin.
    let given = CERT
        .strip_suffix('\n')
        .expect("CERT ends with a line break");
    let digest = hex::encode(sha2::Sha256::digest(given.as_bytes()));
    assert!(
        fetched.contains(&format!("cert sha256: {digest}")),
        "{fetched}"
    );
    let path = fetched
        .lines()
        .find_map(|l| l.strip_prefix("path: "))
        .expect("the step printed the file's path");
    assert!(
        !std::path::Path::new(path).exists(),
        "{path} outlived its step"
    );
    // The next step of the same task gets neither the variable nor the file.
    let after = crate::support::read_text(&run.join("steps/after/stdout.log"));
    assert!(after.contains("fetch var: []"), "{after}");
    assert!(after.contains("inputs: gone"), "{after}");
    // The raw value is nowhere under the home: not in the database, logs, bundles or scratch.
    let secret_line = "Qm9ndXMta2V5LWZvci1vcmNoLWUyZQ-7731";
    let holding: Vec<String> = crate::support::files_under(home.path())
        .into_iter()
        .filter(|f| {
            std::fs::read(f).is_ok_and(|bytes| {
                bytes
                    .windows(secret_line.len())
                    .any(|w| w == secret_line.as_bytes())
            })
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(holding.is_empty(), "the raw value is in {holding:?}");
}

#[test]
fn job_commands_with_server_go_through_the_api() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# jobs\n")]);
    let project = repo.path().to_str().expect("UTF-8 path");
    let serve = home.serve(&["--workers", "0"]);
    let server = format!("http://{}", home.serve_addr());
    let remote = |args: &[&str]| {
        let mut all = vec!["job"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--server", &server]);
        home.run(&all)
    };
    let added = remote(&[
        "add",
        "nightly",
        "--schedule",
        "0 3 * * *",
        "--tz",
        "Europe/Berlin",
        "Nightly check",
        "--exec",
        "true",
        "--project",
        project,
        "--json",
    ]);
    added.expect_code(0, "orch job add --server");
    let added = added.json();
    assert_eq!(added["name"], "nightly", "{added:#}");
    assert!(
        added["next_local"].as_str().unwrap().contains("03:00:00"),
        "{added:#}"
    );
    // A broken schedule is refused by the daemon with the reason.
    let broken = remote(&[
        "add",
        "bad",
        "--schedule",
        "61 * * * *",
        "x",
        "--project",
        project,
    ]);
    broken.expect_code(2, "a broken schedule");
    assert!(broken.stderr.contains("61"), "{}", broken.stderr);

    let listed = remote(&["list", "--json"]);
    listed.expect_code(0, "orch job list --server");
    assert_eq!(listed.json()[0]["title"], "Nightly check");
    let table = remote(&["list"]);
    assert!(
        table.stdout.contains("nightly") && table.stdout.contains("Nightly check"),
        "{}",
        table.stdout
    );

    remote(&["disable", "nightly"]).expect_code(0, "disable");
    // The store (read here without the daemon's API) has it disabled.
    let local = home.json(&["job", "list", "--json"]);
    assert_eq!(local[0]["enabled"], false, "{local:#}");
    remote(&["enable", "nightly"]).expect_code(0, "enable");

    let fired = remote(&["run", "nightly", "--json"]);
    fired.expect_code(0, "orch job run --server");
    let task = int(&fired.json(), "task");
    let detail = home.task(task);
    assert_eq!(detail["events"][0]["actor"], "api", "{detail:#}");

    let tick = remote(&["tick"]);
    tick.expect_code(2, "orch job tick --server");
    assert!(tick.stderr.contains("ticks by itself"), "{}", tick.stderr);
    let missing = remote(&["remove", "nope"]);
    assert_ne!(missing.code, Some(0), "{}", missing.stderr);
    remote(&["remove", "nightly"]).expect_code(0, "remove");
    assert_eq!(home.json(&["job", "list", "--json"]), serde_json::json!([]));
    serve.kill();
}

#[test]
fn a_remote_workers_parent_step_sees_its_childrens_results() {
    let home = Home::new();
    let far = Home::new();
    let repo = Repo::new(&[("gather.sh", "cat \"$ORCH_CONTEXT\"\n")]);
    let yaml = "name: tree\ndefaults:\n  retry: {max_attempts: 3, backoff: 100ms}\ntasks:\n  - id: parent\n    title: Put the parts together\n    steps:\n      - name: gather\n        exec:\n          - argv: [bash, gather.sh]\n  - id: one\n    title: Part one\n    parent: parent\n    steps:\n      - name: work\n        exec:\n          - argv: [echo, part one]\n  - id: two\n    title: Part two\n    parent: parent\n    steps:\n      - name: work\n        exec:\n          - argv: [echo, part two]\n";
    let ids = home.submit("tree", yaml, repo.path());
    let serve = home.serve(&["--workers", "0"]);
    let (server, token) = crate::remote::server_and_token(&home);
    let worker = crate::remote::worker(&far, &server, &token, "far");
    let parent = ids["parent"];
    poll_until("the parent is done", SERVE_DEADLINE, || {
        let status = home.task_status(parent);
        assert!(
            !["failed", "needs_review", "cancelled"].contains(&status.as_str()),
            "{:#}",
            home.task(parent)
        );
        (status == "done").then_some(())
    });
    let detail = home.task(parent);
    let runs = detail["runs"].as_array().map_or(1, |r| r.len() as u32);
    assert!(
        detail["runs"][0]["owner"]
            .as_str()
            .unwrap()
            .starts_with("far"),
        "{detail:#}"
    );
    let printed = crate::support::read_text(
        &home
            .run_dir(parent, runs)
            .join("steps/gather/cmd-1.stdout.log"),
    );
    let seen: serde_json::Value =
        serde_json::from_str(&printed).expect("the step printed its context");
    let children = seen["children"]
        .as_array()
        .expect("children in the context");
    let titles: Vec<&str> = children
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Part one", "Part two"], "{seen:#}");
    for child in children {
        assert_eq!(child["status"], "done", "{child:#}");
        assert_eq!(child["result"]["status"], "succeeded", "{child:#}");
    }
    worker.kill();
    serve.kill();
}
