//! Execution end to end: `orch serve` runs real workflows in real git worktrees (or copies) and
//! leaves the artifact bundle, with commands validated before they run, stopped with their
//! children at a timeout, capped in output, and secrets redacted from everything stored.

use std::collections::BTreeMap;
use std::path::Path;

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::support::{
    event_time, files_under, int, peak_rss_kib, poll_until, process_is_alive, read_json, read_text,
    sha256_of, task_events, workspace_of, Home, Repo, SERVE_DEADLINE,
};

/// Files every run directory has (`orch_worker::bundle::RUN_FILES`).
const RUN_FILES: [&str; 8] = [
    "job.json",
    "state.json",
    "result.json",
    "context.json",
    "report.md",
    "patch.diff",
    "logs.txt",
    "manifest.json",
];

/// Files every step directory has (`orch_worker::bundle::STEP_FILES`).
const STEP_FILES: [&str; 7] = [
    "result.json",
    "report.md",
    "patch.diff",
    "logs.txt",
    "stdout.log",
    "stderr.log",
    "events.jsonl",
];

/// Every run and step file, and `cmd-N.{stdout,stderr}.log` for each of a step's `commands`.
fn assert_bundle_complete(run_dir: &Path, steps: &[(&str, usize)]) {
    for name in RUN_FILES {
        assert!(
            run_dir.join(name).is_file(),
            "{} has no {name}",
            run_dir.display()
        );
    }
    for (step, commands) in steps {
        let dir = run_dir.join("steps").join(step);
        for name in STEP_FILES {
            assert!(dir.join(name).is_file(), "{} has no {name}", dir.display());
        }
        for n in 1..=*commands {
            for stream in ["stdout", "stderr"] {
                let name = format!("cmd-{n}.{stream}.log");
                assert!(dir.join(&name).is_file(), "{} has no {name}", dir.display());
            }
        }
    }
}

/// The entries of a run's `manifest.json` that belong to `step`.
fn manifest_entries(run_dir: &Path, step: &str) -> Vec<Value> {
    let manifest = read_json(&run_dir.join("manifest.json"));
    manifest["entries"]
        .as_array()
        .expect("`entries` is a list")
        .iter()
        .filter(|e| e["step"] == step)
        .cloned()
        .collect()
}

/// The one event of `kind` of a task; panics unless there is exactly one.
fn only_event<'a>(task: &'a Value, kind: &str) -> &'a Value {
    let events = task_events(task, kind);
    assert_eq!(
        events.len(),
        1,
        "task {} has {} `{kind}` events: {:#}",
        task["task"]["id"],
        events.len(),
        task["events"]
    );
    events[0]
}

#[test]
fn a_diamond_workflow_runs_in_dependency_order_in_parallel_worktrees_and_leaves_full_bundles() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let head = repo.head();
    // Task `a` is the first task of a fresh home, so its scratch area is `scratch/1`; its second
    // step prints the context it was given (`$ORCH_CONTEXT`, a copy outside the bundle, which a
    // step cannot reach), to show what step 2 saw of step 1.
    let context_of_a = home.path().join("scratch/1/context.json");
    let yaml = format!(
        r#"name: diamond
defaults:
  retry: {{max_attempts: 1}}
tasks:
  - id: a
    title: Write the greeting
    steps:
      - name: write
        agent: sim
        prompt: |
          Write the greeting.
          @write greeting.txt
          hello from task a
          @end
      - name: check
        exec:
          - argv: [cat, greeting.txt]
          - argv: [cat, "{context}"]
  - id: b
    title: Wait on the left
    needs: [a]
    steps:
      - name: wait
        exec:
          - argv: [sleep, "0.5"]
  - id: c
    title: Wait on the right
    needs: [a]
    steps:
      - name: wait
        exec:
          - argv: [sleep, "0.5"]
  - id: d
    title: Join both sides
    needs: [b, c]
    steps:
      - name: join
        agent: sim
        prompt: |
          Join both sides.
          @write joined.txt
          b and c are done
          @end
"#,
        context = context_of_a.display()
    );
    let ids = home.submit("diamond", &yaml, repo.path());
    assert_eq!(ids["a"], 1, "the bundle path in the workflow assumes this");

    home.serve_until_idle(2);

    let tasks: BTreeMap<&str, Value> = ids
        .iter()
        .map(|(key, id)| (key.as_str(), home.task(*id)))
        .collect();
    for (key, task) in &tasks {
        assert_eq!(task["task"]["status"], "done", "task {key}: {task:#}");
    }
    // Dependency order: every claim comes after the completions of the task's dependencies.
    for (key, needs) in [("b", &["a"][..]), ("c", &["a"]), ("d", &["b", "c"])] {
        let claim = only_event(&tasks[key], "claim");
        for dep in needs {
            let complete = only_event(&tasks[dep], "complete");
            assert!(
                int(claim, "id") > int(complete, "id") && event_time(claim) >= event_time(complete),
                "{key} was claimed ({claim}) before {dep} completed ({complete})"
            );
        }
    }
    // b and c ran at the same time: their claim-to-complete intervals overlap.
    let interval = |key: &str| {
        (
            event_time(only_event(&tasks[key], "claim")),
            event_time(only_event(&tasks[key], "complete")),
        )
    };
    let ((b_start, b_end), (c_start, c_end)) = (interval("b"), interval("c"));
    assert!(
        b_start < c_end && c_start < b_end,
        "b ({b_start:?}..{b_end:?}) and c ({c_start:?}..{c_end:?}) did not overlap"
    );

    let steps: BTreeMap<&str, Vec<(&str, usize)>> = BTreeMap::from([
        ("a", vec![("write", 0), ("check", 2)]),
        ("b", vec![("wait", 1)]),
        ("c", vec![("wait", 1)]),
        ("d", vec![("join", 0)]),
    ]);
    for (key, id) in &ids {
        let dir = home.run_dir(*id, 1);
        assert_bundle_complete(&dir, &steps[key.as_str()]);
        let result = read_json(&dir.join("result.json"));
        assert_eq!(result["status"], "succeeded", "{key}: {result:#}");
        assert_eq!(result["kind"], "run");
        assert_eq!(result["task"], *id);
        let title = tasks[key.as_str()]["task"]["title"]
            .as_str()
            .expect("titles are text");
        let report = read_text(&dir.join("report.md"));
        assert!(
            report.contains(&format!("Task {id}: {title}")),
            "report.md of {key} does not name the task:\n{report}"
        );
        for (step, _) in &steps[key.as_str()] {
            let step_result = read_json(&dir.join("steps").join(step).join("result.json"));
            assert_eq!(step_result["status"], "succeeded", "{key}/{step}");
        }
    }

    let a = home.run_dir(ids["a"], 1);
    let patch = read_text(&a.join("patch.diff"));
    assert!(
        patch.contains("greeting.txt") && patch.contains("+hello from task a"),
        "patch.diff of a:\n{patch}"
    );
    let step_patch = read_text(&a.join("steps/write/patch.diff"));
    assert!(
        step_patch.contains("+hello from task a"),
        "steps/write/patch.diff of a:\n{step_patch}"
    );
    assert_eq!(
        read_text(&home.run_dir(ids["b"], 1).join("patch.diff")),
        "",
        "b changed nothing"
    );

    let events: Vec<Value> = read_text(&a.join("steps/write/events.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(events.first().map(|e| &e["type"]), Some(&json!("init")));
    assert_eq!(events.last().map(|e| &e["type"]), Some(&json!("result")));
    assert_eq!(events.last().map(|e| &e["is_error"]), Some(&json!(false)));
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "tool_call" && e["name"] == "write_file"),
        "{events:?}"
    );

    let commands = manifest_entries(&a, "check");
    let argvs: Vec<&Value> = commands.iter().map(|c| &c["argv"]).collect();
    assert_eq!(
        argvs,
        [
            &json!(["cat", "greeting.txt"]),
            &json!(["cat", context_of_a.display().to_string()])
        ]
    );
    for (n, command) in commands.iter().enumerate() {
        assert_eq!(command["type"], "command");
        assert_eq!(command["exit"]["code"], 0, "{command:#}");
        let stdout = a.join(command["stdout"]["path"].as_str().expect("paths are text"));
        assert_eq!(
            stdout,
            a.join(format!("steps/check/cmd-{}.stdout.log", n + 1))
        );
        assert_eq!(command["stdout"]["sha256"], sha256_of(&stdout));
        assert_eq!(
            command["stderr"]["sha256"],
            sha256_of(&a.join(format!("steps/check/cmd-{}.stderr.log", n + 1)))
        );
    }
    assert_eq!(
        read_text(&a.join("steps/check/cmd-1.stdout.log")),
        "hello from task a\n"
    );
    let sim = manifest_entries(&a, "write");
    assert_eq!(sim.len(), 1, "{sim:?}");
    assert_eq!(sim[0]["type"], "agent");
    assert_eq!(
        sim[0]["events_sha256"],
        sha256_of(&a.join("steps/write/events.jsonl"))
    );
    let wait = manifest_entries(&home.run_dir(ids["b"], 1), "wait");
    assert_eq!(wait.len(), 1);
    assert_eq!(wait[0]["argv"], json!(["sleep", "0.5"]));
    assert_eq!(wait[0]["exit"]["code"], 0);

    // What step 2 was given: step 1 only. At the end: both steps.
    let seen_by_check: Value =
        serde_json::from_str(&read_text(&a.join("steps/check/cmd-2.stdout.log")))
            .expect("step 2 printed context.json");
    let step_names = |context: &Value| -> Vec<(String, String)> {
        context["steps"]
            .as_array()
            .expect("`steps` is a list")
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or_default().to_owned(),
                    s["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        step_names(&seen_by_check),
        [("write".to_owned(), "succeeded".to_owned())]
    );
    assert_eq!(
        step_names(&read_json(&a.join("context.json"))),
        [
            ("write".to_owned(), "succeeded".to_owned()),
            ("check".to_owned(), "succeeded".to_owned())
        ]
    );

    // The main checkout is untouched; the task's branch has the commit.
    assert_eq!(repo.head(), head, "HEAD of the main checkout moved");
    assert_eq!(repo.status(), "", "the main checkout is not clean");
    assert_eq!(repo.git(&["branch", "--show-current"]), "main");
    assert!(!repo.path().join("greeting.txt").exists());
    let branch = format!("orch/{}-write-the-greeting", ids["a"]);
    let result = read_json(&a.join("result.json"));
    assert_eq!(
        repo.git(&["rev-parse", &branch]),
        result["commit"],
        "{result:#}"
    );
    // One checkpoint commit per step, each naming it, on top of where the task started.
    assert_eq!(
        repo.git(&["log", "--format=%s", &format!("{head}..{branch}")]),
        format!(
            "orch: task {id} run 1 step check\norch: task {id} run 1 step write",
            id = ids["a"]
        )
    );
    assert_eq!(
        repo.git(&["show", &format!("{branch}:greeting.txt")]),
        "hello from task a"
    );
    home.assert_consistent("after the diamond ran");
}

#[test]
fn a_step_past_its_timeout_is_killed_with_its_grandchildren_and_the_task_needs_review() {
    let home = Home::new();
    let repo = Repo::new(&[(".orch.toml", "allow_shell = true\n")]);
    let ids = home.submit(
        "timeout",
        r#"name: timeout
defaults:
  retry: {max_attempts: 3, backoff: 0s, jitter: 0s}
tasks:
  - id: slow
    title: Outlive the timeout
    steps:
      - name: spawn
        timeout: 1s
        exec:
          - argv: [sh, -c, "sleep 100 & echo $! > grandchild.pid; wait"]
"#,
        repo.path(),
    );
    let id = ids["slow"];
    home.serve_until_idle(1);

    let task = home.task(id);
    assert_eq!(task["task"]["status"], "needs_review", "{task:#}");
    let reason = task["task"]["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("timeout of 1s") && reason.contains("spawn"),
        "{reason}"
    );
    assert_eq!(task["runs"].as_array().map(Vec::len), Some(1), "no retry");
    let dir = home.run_dir(id, 1);
    let result = read_json(&dir.join("result.json"));
    assert_eq!(result["status"], "needs_review");
    let command = &manifest_entries(&dir, "spawn")[0];
    assert_eq!(command["exit"]["cancelled"], true, "{command:#}");

    let pid_file = workspace_of(&dir).join("grandchild.pid");
    let pid: i32 = read_text(&pid_file)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{} holds no pid: {e}", pid_file.display()));
    assert!(
        !process_is_alive(pid),
        "the grandchild {pid} outlived the step's timeout"
    );
}

#[test]
fn refused_commands_fail_on_the_first_attempt_and_nothing_from_them_on_runs() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let outside = tempfile::tempdir().expect("create a directory outside the workspace");
    let keep = outside.path().join("keep.txt");
    std::fs::write(&keep, "still here\n").expect("write a file outside the workspace");
    let yaml = format!(
        r#"name: refused
defaults:
  retry: {{max_attempts: 3, backoff: 0s, jitter: 0s}}
tasks:
  - id: shell
    title: Use a shell string
    steps:
      - name: touch
        exec:
          - argv: [sh, -c, "touch marker"]
  - id: rm
    title: Delete outside the workspace
    steps:
      - name: delete
        exec:
          - argv: [touch, marker]
          - argv: [rm, -rf, "{outside}"]
"#,
        outside = outside.path().display()
    );
    let ids = home.submit("refused", &yaml, repo.path());
    home.serve_until_idle(2);

    let outside_text = outside.path().display().to_string();
    for (key, expected) in [
        ("shell", ["sh -c 'touch marker'", "allow_shell", "refused"]),
        ("rm", ["rm -rf", &outside_text, "outside the workspace"]),
    ] {
        let id = ids[key];
        let task = home.task(id);
        assert_eq!(task["task"]["status"], "failed", "{key}: {task:#}");
        assert_eq!(task["task"]["attempts_used"], 1, "{key}: no retry");
        assert_eq!(task["runs"].as_array().map(Vec::len), Some(1), "{key}");
        let reason = task["task"]["status_reason"].as_str().unwrap_or_default();
        let dir = home.run_dir(id, 1);
        let result = read_json(&dir.join("result.json"));
        assert_eq!(result["status"], "failed");
        let error = result["error"].as_str().unwrap_or_default();
        for text in &expected {
            assert!(reason.contains(text), "{key}: `{text}` not in {reason}");
            assert!(error.contains(text), "{key}: `{text}` not in {error}");
        }
        // Each command is checked just before it runs: `touch` ran, `rm` never did.
        let ran = usize::from(key == "rm");
        assert_eq!(
            manifest_entries(&dir, "touch").len() + manifest_entries(&dir, "delete").len(),
            ran,
            "{key}: the refused command ran, or the one before it did not"
        );
        assert_eq!(
            workspace_of(&dir).join("marker").exists(),
            key == "rm",
            "{key}: only the command before the refused one runs"
        );
    }
    assert!(!repo.path().join("marker").exists());
    assert_eq!(
        read_text(&keep),
        "still here\n",
        "rm ran outside the workspace"
    );
    home.assert_consistent("after the refusals");
}

/// A workflow of one task whose one command prints `bytes` zero bytes.
fn zeros_workflow(name: &str, bytes: u64) -> String {
    format!(
        "name: {name}\ntasks:\n  - id: {name}\n    title: Print {bytes} bytes\n    steps:\n      - name: {name}\n        exec:\n          - argv: [head, -c, \"{bytes}\", /dev/zero]\n"
    )
}

#[test]
fn a_hundred_megabytes_of_output_are_capped_at_one_mebibyte_without_the_daemon_holding_them() {
    const MIB: u64 = 1024;
    let home = Home::new();
    let repo = Repo::new(&[(".orch.toml", "output_cap_bytes = 1048576\n")]);
    let mut serve = home.serve(&["--workers", "1", "--lease", "2s", "--grace", "1s"]);
    let pid = serve.pid().as_raw();
    // VmHWM is the peak so far, so reading it once a task is done (the daemon still alive)
    // covers the whole run. A small run first: the daemon's memory after it is the baseline,
    // so the comparison is about the output alone, not about running a task at all.
    let mut run_to_the_end = |name: &str, bytes: u64| -> (i64, u64) {
        let id = home.submit(name, &zeros_workflow(name, bytes), repo.path())[name];
        poll_until(
            &format!("the task `{name}` to finish"),
            SERVE_DEADLINE,
            || {
                assert!(!serve.has_exited(), "orch serve exited early");
                let status = home.task_status(id);
                (status != "queued" && status != "running").then_some(())
            },
        );
        (id, peak_rss_kib(pid).expect("orch serve is alive"))
    };
    let (_, warm_kib) = run_to_the_end("small", 1000);
    let (id, peak_kib) = run_to_the_end("flood", 100_000_000);
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");
    eprintln!("orch serve peak RSS: {warm_kib} KiB after a small run, {peak_kib} KiB after 100 MB of output");
    assert!(
        // The bound that matters is the growth: the output must not pass through the
        // daemon's memory. The absolute cap only catches a daemon bloated from the start (a
        // debug build with the forge client and the multi-threaded runtime sits near 95 MiB).
        peak_kib < 128 * MIB && peak_kib.saturating_sub(warm_kib) < 16 * MIB,
        "orch serve grew from {warm_kib} KiB to {peak_kib} KiB for 100 MB of output"
    );

    assert_eq!(home.task_status(id), "done");
    let dir = home.run_dir(id, 1);
    let stdout = std::fs::read(dir.join("steps/flood/cmd-1.stdout.log")).expect("read stdout");
    assert!(
        stdout.len() >= 1_048_576 && stdout.len() < 1_048_576 + 1024,
        "{} bytes kept",
        stdout.len()
    );
    assert!(stdout[..1_048_576].iter().all(|b| *b == 0));
    let note = String::from_utf8_lossy(&stdout[1_048_576..]);
    assert!(note.contains("truncated"), "no truncation note: {note:?}");
    let command = &manifest_entries(&dir, "flood")[0];
    assert_eq!(command["stdout"]["bytes_seen"], 100_000_000);
    assert_eq!(command["stdout"]["bytes_kept"], 1_048_576);
    assert_eq!(command["stdout"]["truncated"], true);
    assert_eq!(command["exit"]["code"], 0);
}

#[test]
fn secrets_and_tokens_never_reach_the_run_bundles() {
    const TOKEN: &str = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    const SECRET: &str = "s3cr3t-value-12345";
    let home = Home::new();
    let repo = Repo::new(&[(".orch.toml", "secret_env = [\"DEMO_SECRET\"]\n")]);
    let yaml = format!(
        r#"name: secrets
tasks:
  - id: leak
    title: Print secrets
    steps:
      - name: print
        exec:
          - argv: [echo, "token {TOKEN} here"]
          - argv: [printenv, DEMO_SECRET]
      - name: write
        agent: sim
        prompt: |
          Store the token.
          @write token.txt
          {TOKEN}
          @end
"#
    );
    let ids = home.submit("secrets", &yaml, repo.path());
    let id = ids["leak"];
    home.spawn_with_env(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--lease",
            "2s",
            "--grace",
            "1s",
            "--exit-when-idle",
        ],
        &[("DEMO_SECRET", SECRET)],
    )
    .finish(SERVE_DEADLINE)
    .expect_code(0, "orch serve");

    assert_eq!(home.task_status(id), "done");
    let dir = home.run_dir(id, 1);
    // The commands really printed them (redacted), and the sim step really wrote a file.
    let printed = read_text(&dir.join("steps/print/cmd-1.stdout.log"));
    assert!(printed.starts_with("token [REDACTED:"), "{printed}");
    assert!(read_text(&dir.join("steps/print/cmd-2.stdout.log")).starts_with("[REDACTED:"));
    assert!(read_text(&dir.join("patch.diff")).contains("+[REDACTED:"));
    // The prompt was redacted before it was stored, so the agent never saw the token.
    assert_eq!(
        read_text(&workspace_of(&dir).join("token.txt")),
        "[REDACTED:github_token]\n"
    );

    let mut marked = Vec::new();
    for file in files_under(&home.path().join("runs")) {
        let bytes = std::fs::read(&file).expect("read a bundle file");
        for needle in [TOKEN, SECRET] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} contains `{needle}`",
                file.display()
            );
        }
        if bytes.windows(10).any(|w| w == b"[REDACTED:") {
            marked.push(file.strip_prefix(&dir).unwrap_or(&file).to_owned());
        }
    }
    for expected in [
        "steps/print/cmd-1.stdout.log",
        "steps/print/cmd-2.stdout.log",
        "patch.diff",
        "job.json",
        "steps/write/events.jsonl",
    ] {
        assert!(
            marked.iter().any(|m| m == Path::new(expected)),
            "{expected} has no [REDACTED: marker; marked: {marked:?}"
        );
    }
    let manifest = read_json(&dir.join("manifest.json"));
    let counts = &manifest["redactions"];
    // The token was redacted from the spec at submit, so the run never met it raw; only the
    // secret env value is found by the bundle's redactor.
    assert!(
        counts["secret_value"].as_u64().unwrap_or(0) >= 1,
        "manifest redaction counts: {counts}"
    );
}

#[test]
fn a_directory_that_is_not_a_repository_is_copied_sent_to_review_or_failed_as_configured() {
    let home = Home::new();
    let mut projects = BTreeMap::new();
    let mut dirs = Vec::new();
    for mode in ["copy", "needs_review", "fail"] {
        let dir = tempfile::tempdir().expect("create a project directory");
        std::fs::write(
            dir.path().join(".orch.toml"),
            format!("non_git = \"{mode}\"\n"),
        )
        .expect("write .orch.toml");
        std::fs::write(dir.path().join("original.txt"), "original\n").expect("write a file");
        let ids = home.submit(
            mode,
            &format!(
                r#"name: {mode}
defaults:
  retry: {{max_attempts: 3, backoff: 0s, jitter: 0s}}
tasks:
  - id: work
    title: Work in a plain directory
    steps:
      - name: edit
        agent: sim
        prompt: |
          Edit.
          @write made-by-task.txt
          new
          @end
          @delete original.txt
      - name: touch
        exec:
          - argv: [touch, touched.txt]
"#
            ),
            dir.path(),
        );
        projects.insert(mode, ids["work"]);
        dirs.push(dir);
    }
    home.serve_until_idle(2);

    let copy = home.task(projects["copy"]);
    assert_eq!(copy["task"]["status"], "done", "{copy:#}");
    let workspace = workspace_of(&home.run_dir(projects["copy"], 1));
    assert!(workspace.join("made-by-task.txt").is_file());
    assert!(workspace.join("touched.txt").is_file());
    assert!(!workspace.join("original.txt").exists());

    let review = home.task(projects["needs_review"]);
    assert_eq!(review["task"]["status"], "needs_review", "{review:#}");
    let failed = home.task(projects["fail"]);
    assert_eq!(failed["task"]["status"], "failed", "{failed:#}");
    assert_eq!(failed["task"]["attempts_used"], 1, "no retry");
    for task in [&review, &failed] {
        let reason = task["task"]["status_reason"].as_str().unwrap_or_default();
        assert!(reason.contains("git"), "{reason}");
    }

    // No task touched its original directory.
    for dir in &dirs {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list the project")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [".orch.toml", "original.txt"],
            "{}",
            dir.path().display()
        );
        assert_eq!(read_text(&dir.path().join("original.txt")), "original\n");
    }
    home.assert_consistent("after the plain directories");
}

#[test]
fn a_step_that_replaces_the_worktrees_git_with_an_fsmonitor_payload_is_refused_and_nothing_runs() {
    let home = Home::new();
    let repo = Repo::new(&[(".orch.toml", "allow_shell = true\n")]);
    let outside = tempfile::tempdir().expect("create a directory outside the workspace");
    let marker = outside.path().join("payload-ran");
    let payload = outside.path().join("payload.sh");
    std::fs::write(
        &payload,
        format!(
            "#!/bin/sh\nenv > '{m}'\necho ran >> '{m}'\n",
            m = marker.display()
        ),
    )
    .expect("write the payload");
    std::fs::set_permissions(
        &payload,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("make the payload executable");
    let (head, status) = (repo.head(), repo.status());
    // The step swaps the worktree's `.git` file for a repository whose config runs the payload
    // for orch's own `git add`/`diff`/`commit` (fsmonitor, hooks, pager, external diff).
    let script = format!(
        "rm .git && mkdir -p .git/objects .git/refs/heads && \
         echo 'ref: refs/heads/main' > .git/HEAD && \
         printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = {p}\\n\\thooksPath = {hooks}\\n\\tpager = {p}\\n[diff]\\n\\texternal = {p}\\n' > .git/config && \
         echo work > work.txt",
        p = payload.display(),
        hooks = outside.path().display(),
    );
    let yaml = format!(
        r#"name: hostile-git
defaults:
  retry: {{max_attempts: 3, backoff: 0s, jitter: 0s}}
tasks:
  - id: swap
    title: Replace .git
    steps:
      - name: swap
        exec:
          - argv: [sh, -c, {script:?}]
"#
    );
    let ids = home.submit("hostile-git", &yaml, repo.path());
    home.serve_until_idle(1);

    let id = ids["swap"];
    let task = home.task(id);
    assert_eq!(task["task"]["status"], "failed", "{task:#}");
    assert_eq!(
        task["task"]["attempts_used"], 1,
        "refused for good, no retry"
    );
    let reason = task["task"]["status_reason"].as_str().unwrap_or_default();
    let dir = home.run_dir(id, 1);
    let result = read_json(&dir.join("result.json"));
    assert_eq!(result["status"], "failed", "{result:#}");
    assert_eq!(result["commit"], Value::Null, "{result:#}");
    let error = result["error"].as_str().unwrap_or_default();
    for text in [reason, error] {
        assert!(text.contains("orch did not commit or diff"), "{text}");
        assert!(text.contains(".git was replaced by a directory"), "{text}");
    }
    assert!(
        !marker.exists(),
        "orch's git ran the task's payload: {}",
        read_text(&marker)
    );
    assert_eq!(read_text(&dir.join("patch.diff")), "");
    assert_eq!(repo.head(), head, "the main checkout's HEAD moved");
    assert_eq!(repo.status(), status, "the main checkout changed");
    home.assert_consistent("after the refusal");
}
