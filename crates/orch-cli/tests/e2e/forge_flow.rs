//! The orch side of GitHub through the real `orch` binary: `orch init --repo` links a project, a
//! task given only a title and body is agent work (one `sim` step from the project's
//! `default_agent`), a finished task's branch is pushed to the project's remote (a real bare
//! repository) and its pull request op is enqueued, `orch task get` shows the links, an
//! issue delivered by webhook becomes one task linked to it, `orch task publish` enqueues one
//! issue, and no step can read the forge's token.

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::support::{files_under, git, int, poll_until, Home, Repo, SERVE_DEADLINE};
use crate::webhooks::{deliver, sign};

const TOKEN_VAR: &str = "ORCH_E2E_FORGE_TOKEN";
const TOKEN: &str = "ghp_e2eForgeToken0123456789abcdefABCDEF";
/// An API base nothing listens on: these tests' forge writes are never sent (and never reach
/// github.com); `tests/github` sends them to a fake GitHub.
const NO_FORGE: &str = "http://127.0.0.1:9";

/// A repository whose `origin` is a bare repository (file://), with `.orch.toml` committed.
fn linked_repo(config: &str) -> (Repo, tempfile::TempDir) {
    let repo = Repo::new(&[("README.md", "# widgets\n"), (".orch.toml", config)]);
    let remote = tempfile::tempdir().unwrap();
    git(remote.path(), &["init", "-q", "--bare"]);
    let url = format!("file://{}", remote.path().display());
    repo.git(&["remote", "add", "origin", &url]);
    (repo, remote)
}

fn ops(home: &Home) -> Vec<Vec<String>> {
    home.query_rows(
        "SELECT idempotency_key, state, COALESCE(task_id, 0), op FROM forge_outbox ORDER BY id",
    )
}

#[test]
fn init_with_a_repo_links_the_project_and_bad_names_are_refused() {
    let home = Home::new();
    let (repo, _remote) = linked_repo("");
    let project = repo.path().to_str().unwrap();
    let refused = home.run(&["init", project, "--repo", "octo"]);
    refused.expect_code(2, "init --repo octo");
    assert!(
        refused.stderr.contains("owner/repo"),
        "the error says the form: {}",
        refused.stderr
    );
    let linked = home.json(&["init", project, "--repo", "octo-org/widgets", "--json"]);
    assert_eq!(linked["repo"], "octo-org/widgets", "{linked}");
    assert_eq!(
        home.query_text("SELECT repo FROM project_forges"),
        "octo-org/widgets"
    );
    // A `[forge]` section naming another repository is refused, naming both.
    std::fs::write(
        repo.path().join(".orch.toml"),
        "[forge]\nrepo = \"octo-org/gadgets\"\n",
    )
    .unwrap();
    let disagreeing = home.run(&["init", project, "--repo", "octo-org/widgets"]);
    disagreeing.expect_code(2, "init --repo with a disagreeing [forge]");
    assert!(
        disagreeing.stderr.contains("octo-org/gadgets")
            && disagreeing.stderr.contains("octo-org/widgets"),
        "{}",
        disagreeing.stderr
    );
}

#[test]
fn a_title_only_task_runs_its_default_agent_and_its_branch_is_pushed_with_a_pull_request_queued() {
    let home = Home::new();
    let config = format!(
        "default_agent = \"sim\"\n\n[forge]\ntoken_env = \"{TOKEN_VAR}\"\napi_base = \"{NO_FORGE}\"\n"
    );
    let (repo, remote) = linked_repo(&config);
    let project = repo.path().to_str().unwrap();
    home.json(&["init", project, "--repo", "octo/widgets", "--json"]);

    let added = home.run(&[
        "task",
        "add",
        "Write the release notes",
        "--body",
        "List what changed.",
        "--project",
        project,
    ]);
    added.expect_code(0, "task add");
    assert!(
        added.stdout.contains("agent step: `sim`"),
        "task add says which agent: {}",
        added.stdout
    );
    let id: i64 = home.query_int("SELECT MAX(id) FROM tasks");
    let spec = home.task(id)["spec"].clone();
    assert_eq!(spec["steps"][0]["agent"], "sim", "{spec:#}");
    assert_eq!(
        spec["steps"][0]["prompt"],
        "Write the release notes\n\nList what changed."
    );

    let serve = home.spawn_with_env(
        &["serve", "--listen", "127.0.0.1:0", "--workers", "1"],
        &[(TOKEN_VAR, TOKEN)],
    );
    let pushed = poll_until("the task's branch pushed", SERVE_DEADLINE, || {
        let detail = home.task(id);
        detail["forge"]["pushed_commit"]
            .as_str()
            .map(|commit| (detail.clone(), commit.to_owned()))
    });
    let (detail, commit) = pushed;
    assert_eq!(detail["task"]["status"], "done", "{detail:#}");
    let branch = detail["forge"]["head_branch"].as_str().unwrap().to_owned();
    assert_eq!(detail["forge"]["repo"], "octo/widgets");
    assert_eq!(detail["branch"]["name"], branch.as_str());
    assert_eq!(detail["branch"]["head"], commit.as_str());
    // The remote holds the task's commit, with the agent's edit.
    assert_eq!(
        git(
            remote.path(),
            &["rev-parse", &format!("refs/heads/{branch}")]
        ),
        commit
    );
    let notes = git(remote.path(), &["show", &format!("{commit}:NOTES.md")]);
    assert!(notes.contains("Write the release notes"), "{notes}");
    // The pull request op is in the outbox once (nothing listens at the API base: not sent).
    let pull = poll_until("the pull request op", SERVE_DEADLINE, || {
        ops(&home)
            .into_iter()
            .find(|row| row[0] == format!("pull:task-{id}"))
    });
    assert_eq!(pull[1], "pending");
    let op: Value = serde_json::from_str(&pull[3]).unwrap();
    assert_eq!(op["op"], "create_pull_request");
    assert_eq!(op["head"], branch.as_str());
    assert_eq!(op["base"], "main");
    assert_eq!(op["title"], "Write the release notes");

    // The human view shows the push.
    let shown = home.run(&["task", "get", &id.to_string()]);
    assert!(
        shown
            .stdout
            .contains(&format!("pushed:   {branch} to octo/widgets")),
        "{}",
        shown.stdout
    );
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "serve after SIGTERM");

    // The token is in no file under the home (database included) and no argv of the push.
    for file in files_under(home.path()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(TOKEN),
            "the token is in {}",
            file.display()
        );
    }
    let config = std::fs::read_to_string(repo.path().join(".git/config")).unwrap();
    assert!(
        !config.contains(TOKEN) && !config.contains("credential"),
        "{config}"
    );
}

#[test]
fn no_step_can_read_the_forge_token_from_its_file_or_the_daemons_environment() {
    let home = Home::new();
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("github-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let config = format!(
        "env_allowlist = [\"PATH\"]\n\n[forge]\ntoken_file = \"{}\"\napi_base = \"{NO_FORGE}\"\n",
        token_file.display()
    );
    let (repo, _remote) = linked_repo(&config);
    let project = repo.path().to_str().unwrap();
    home.json(&["init", project, "--repo", "octo/widgets", "--json"]);
    let path = token_file.to_str().unwrap();
    let read = int(
        &home.json(&[
            "task",
            "add",
            "read the token file",
            "--exec",
            &format!("cat {path}"),
            "--max-attempts",
            "1",
            "--project",
            project,
            "--json",
        ]),
        "id",
    );
    let env = int(
        &home.json(&[
            "task",
            "add",
            "print the environment",
            "--exec",
            "env",
            "--project",
            project,
            "--json",
        ]),
        "id",
    );
    let serve = home.spawn_with_env(
        &["serve", "--listen", "127.0.0.1:0", "--workers", "2"],
        &[(TOKEN_VAR, TOKEN), ("GITHUB_TOKEN", TOKEN)],
    );
    poll_until("both tasks finished", SERVE_DEADLINE, || {
        let statuses = (home.task_status(read), home.task_status(env));
        (statuses.0 != "queued"
            && statuses.0 != "running"
            && statuses.1 != "queued"
            && statuses.1 != "running")
            .then_some(statuses)
    });
    serve.signal(Signal::SIGTERM);
    serve.finish(SERVE_DEADLINE);
    assert_eq!(home.task_status(read), "failed", "the token file is hidden");
    assert_eq!(home.task_status(env), "done");
    for task in [read, env] {
        for file in files_under(&home.run_dir(task, 1)) {
            let text =
                String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
            assert!(
                !text.contains(TOKEN),
                "the token leaked into {}",
                file.display()
            );
        }
    }
    let stderr: String = files_under(&home.run_dir(read, 1))
        .into_iter()
        .filter(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("stderr"))
        })
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    assert!(
        stderr.contains("Permission denied"),
        "cat was refused by the sandbox: {stderr}"
    );
}

#[test]
fn an_issue_becomes_one_linked_task_and_publish_enqueues_one_issue() {
    let home = Home::new();
    let (repo, _remote) = linked_repo("");
    let project = repo.path().to_str().unwrap();
    home.json(&["init", project, "--repo", "acme/widgets", "--json"]);
    let secret = "e2e-forge-secret";
    let secret_file = home.write("github-secret", &format!("{secret}\n"));
    let serve = home.serve(&[
        "--workers",
        "0",
        "--github-webhook-secret-file",
        secret_file.to_str().unwrap(),
        "--github-project",
        project,
    ]);
    let url = format!("http://{}/v1/webhooks/github", home.serve_addr());
    let issue = |action: &str| {
        json!({
            "action": action,
            "issue": { "number": 7, "title": "Fix the parser", "body": "It drops a line.",
                       "labels": [{ "name": "orch" }] },
            "repository": { "full_name": "acme/widgets" },
        })
        .to_string()
    };
    let opened = issue("opened");
    let (status, first) = deliver(
        &url,
        "issues",
        "d-1",
        opened.as_bytes(),
        &sign(secret, opened.as_bytes()),
    );
    assert_eq!(status, 201, "{first}");
    let task = first["task"].as_i64().unwrap();
    // Labelled again under another delivery id: the same task.
    let labeled = issue("labeled");
    let (status, again) = deliver(
        &url,
        "issues",
        "d-2",
        labeled.as_bytes(),
        &sign(secret, labeled.as_bytes()),
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["task"], task);
    assert_eq!(home.query_int("SELECT COUNT(*) FROM tasks"), 1);
    let detail = home.task(task);
    assert_eq!(detail["forge"]["issue"], 7, "{detail:#}");
    assert_eq!(
        detail["spec"]["steps"][0]["agent"], "auto",
        "an issue is agent work"
    );
    // The leader's sync enqueues the labels and the marker comment of the new task, keyed by
    // the event, plus the repository's labels once.
    let keys = poll_until("the task's forge ops", SERVE_DEADLINE, || {
        let keys: Vec<String> = ops(&home).into_iter().map(|row| row[0].clone()).collect();
        keys.iter()
            .any(|k| k.starts_with(&format!("marker:task-{task}:")))
            .then_some(keys)
    });
    assert!(
        keys.iter()
            .any(|k| k.starts_with("ensure-labels:acme/widgets")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("labels:task-{task}:"))),
        "{keys:?}"
    );
    let marker = ops(&home)
        .into_iter()
        .find(|row| row[0].starts_with(&format!("marker:task-{task}:")))
        .unwrap();
    let op: Value = serde_json::from_str(&marker[3]).unwrap();
    assert!(
        op["body"]
            .as_str()
            .unwrap()
            .starts_with(&format!("<!-- orch:task {task} -->")),
        "{op}"
    );

    // A local task is published once (through the daemon's API).
    let local = int(
        &home.json(&[
            "task",
            "add",
            "Local work",
            "--exec",
            "true",
            "--project",
            project,
            "--json",
        ]),
        "id",
    );
    let published = home.json(&["task", "publish", &local.to_string(), "--json"]);
    assert_eq!(published["enqueued"], true, "{published}");
    assert_eq!(published["repo"], "acme/widgets");
    let again = home.json(&["task", "publish", &local.to_string(), "--json"]);
    assert_eq!(again["enqueued"], false, "{again}");
    assert_eq!(again["op"], published["op"]);
    let refused = home.run(&["task", "publish", &task.to_string()]);
    refused.expect_code(2, "publishing an issue's task");
    assert!(refused.stderr.contains("issue #7"), "{}", refused.stderr);
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "serve after SIGTERM");
}
