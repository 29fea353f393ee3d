//! Refusals at submit and start (issue 11, items 4, 6 and 8): what can be checked when a task is
//! submitted or a daemon or worker starts is refused then, naming the file or flag and the fix.

use std::os::unix::fs::PermissionsExt;

use crate::support::{poll_until, Home, Repo, SERVE_DEADLINE};

fn stderr_of(home: &Home, args: &[&str], code: i32) -> String {
    let finished = home.run(args);
    finished.expect_code(code, &format!("orch {}", args.join(" ")));
    finished.stderr
}

#[test]
fn an_unknown_agent_is_refused_at_submit_naming_the_known_ones() {
    let home = Home::new();
    let stderr = stderr_of(&home, &["task", "add", "Fix it", "--agent", "claud"], 2);
    assert!(
        stderr.contains("names the agent `claud`, which orch does not know")
            && stderr.contains("sim, claude, codex")
            && stderr.contains("[agents.commands.claud]"),
        "{stderr}"
    );
    let file = home.write(
        "wf.yml",
        "tasks:\n  - id: a\n    title: A\n    steps:\n      - agent: nope\n",
    );
    let stderr = stderr_of(&home, &["run", file.to_str().unwrap()], 2);
    assert!(stderr.contains("the agent `nope`"), "{stderr}");
    assert_eq!(home.status_counts().0, 0, "nothing was stored");
    // A command agent the config defines is known.
    home.write(
        "config.toml",
        "[agents.commands.mine]\nargv = [\"mine\", \"{prompt}\"]\n",
    );
    home.json(&["task", "add", "Fix it", "--agent", "mine", "--json"]);
}

#[test]
fn a_zero_timeout_is_refused_at_submit() {
    let home = Home::new();
    let file = home.write(
        "wf.yml",
        "tasks:\n  - id: a\n    title: A\n    timeout: 0s\n    steps:\n      - agent: sim\n",
    );
    let stderr = stderr_of(&home, &["run", file.to_str().unwrap()], 2);
    assert!(
        stderr.contains("wf.yml:4:")
            && stderr.contains("`timeout: 0s` would stop the run the moment it starts"),
        "{stderr}"
    );
}

#[test]
fn a_project_that_is_a_file_or_missing_is_refused() {
    let home = Home::new();
    let file = home.write("notes.txt", "not a project\n");
    let stderr = stderr_of(
        &home,
        &["task", "add", "A", "--project", file.to_str().unwrap()],
        2,
    );
    assert!(
        stderr.contains("notes.txt: this is a file, not a directory; give the project's directory"),
        "{stderr}"
    );
    let missing = home.path().join("no-such-dir");
    let wf = home.write("wf.yml", "tasks:\n  - {id: a, title: A}\n");
    let stderr = stderr_of(
        &home,
        &[
            "run",
            wf.to_str().unwrap(),
            "--project",
            missing.to_str().unwrap(),
        ],
        2,
    );
    assert!(
        stderr.contains("no-such-dir: no such directory"),
        "{stderr}"
    );
    assert_eq!(home.status_counts().0, 0, "nothing was stored");
}

#[test]
fn a_broken_global_config_is_refused_at_submit_and_at_serve() {
    let home = Home::new();
    let config = home.write("config.toml", "[agents\nenable_real_cli = true\n");
    let stderr = stderr_of(&home, &["task", "add", "A", "--agent", "sim"], 2);
    assert!(
        stderr.contains(&config.display().to_string()) && stderr.contains("fix the file"),
        "{stderr}"
    );
    let serve = home.serve(&["--workers", "0"]).finish(SERVE_DEADLINE);
    serve.expect_code(2, "orch serve with a broken config.toml");
    assert!(
        serve.stderr.contains(&config.display().to_string())
            && serve.stderr.contains("fix the file"),
        "{}",
        serve.stderr
    );
}

#[test]
fn a_worker_with_zero_slots_or_a_zero_lease_is_refused() {
    let home = Home::new();
    let base = ["worker", "--server", "http://127.0.0.1:9", "--name", "w"];
    let mut args = base.to_vec();
    args.extend(["--slots", "0"]);
    let stderr = stderr_of(&home, &args, 2);
    assert!(
        stderr.contains("0 slots would run nothing; give 1 or more"),
        "{stderr}"
    );
    let mut args = base.to_vec();
    args.extend(["--lease", "0s"]);
    let stderr = stderr_of(&home, &args, 2);
    assert!(
        stderr.contains("a lease of 0s would expire before the first heartbeat; give 1s or more"),
        "{stderr}"
    );
    let stderr = stderr_of(&home, &["serve", "--lease", "500ms"], 2);
    assert!(stderr.contains("give 1s or more"), "{stderr}");
}

#[test]
fn a_worker_with_a_wrong_token_stops_with_the_reason() {
    let daemon_home = Home::new();
    let daemon = daemon_home.serve(&["--workers", "0"]);
    let addr = poll_until("the daemon's address", SERVE_DEADLINE, || {
        std::fs::read_to_string(daemon_home.path().join("serve.addr")).ok()
    });
    let worker_home = Home::new();
    let token = worker_home.write("wrong-token", "not-the-token\n");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = format!("http://{}", addr.trim());
    let worker = worker_home
        .spawn(&[
            "worker",
            "--server",
            &server,
            "--name",
            "w",
            "--token-file",
            token.to_str().unwrap(),
        ])
        .finish(SERVE_DEADLINE);
    worker.expect_code(2, "orch worker with a wrong token");
    assert!(
        worker.stderr.contains("refused the worker token")
            && worker.stderr.contains("wrong-token")
            && worker.stderr.contains("`worker-token`"),
        "{}",
        worker.stderr
    );
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");
}

#[test]
fn run_from_a_subdirectory_puts_the_tasks_in_that_repository_wherever_the_file_lives() {
    let home = Home::new();
    let repo = Repo::new(&[("src/lib.rs", "\n")]);
    // The file lives in the home (not a repository); the command runs in repo/src.
    let wf = home.write("wf.yml", "tasks:\n  - {id: a, title: A}\n");
    let out = home
        .command(&["run", wf.to_str().unwrap(), "--json"])
        .current_dir(repo.path().join("src"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let projects = home.json(&["task", "list", "--json"]);
    let project = home.query_text("SELECT path FROM projects");
    assert_eq!(
        std::path::Path::new(&project),
        repo.path().canonicalize().unwrap(),
        "{projects}"
    );
    // A workflow may name its project, relative to the file.
    let other = Repo::new(&[]);
    let named = home.write(
        "named.yml",
        &format!(
            "project: {}\ntasks:\n  - {{id: b, title: B}}\n",
            other.path().display()
        ),
    );
    home.json(&["run", named.to_str().unwrap(), "--json"]);
    let count = home.query_int(&format!(
        "SELECT COUNT(*) FROM projects WHERE path = '{}'",
        other.path().canonicalize().unwrap().display()
    ));
    assert_eq!(count, 1);
}

#[test]
fn a_home_that_is_a_file_is_named_once() {
    let home = Home::new();
    let file = home.write("not-a-home", "");
    for dir in [file.clone(), file.join("sub")] {
        let out = std::process::Command::new(crate::support::ORCH)
            .args(["task", "list"])
            .env("ORCH_HOME", &dir)
            .env_remove("ORCH_DATABASE_URL")
            .current_dir(home.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("{} is a file, not a directory", file.display()))
                && !stderr.contains("os error"),
            "{stderr}"
        );
    }
}
