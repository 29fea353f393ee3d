//! A planner step run by a remote worker (`orch worker --server`, the daemon with no embedded
//! workers): an issue labelled `orch` and `plan` becomes a planned task; the remote worker runs
//! the `sim` planner, sends its plan to the daemon (`POST /v1/worker/runs/{run}/plan`), and the
//! daemon makes the two children; the parent rests `blocked`, the children run on the remote
//! worker, and the parent's next step runs there too, seeing their results. `orch task list
//! --tree` (through the daemon's API) and the API's task views show the children under the
//! parent. On both backends.

use serde_json::Value;

use crate::plan::{
    assert_saw_children, await_children, deliver, issue_payload, serve_linked, PLAN_BODY,
};
use crate::support::{on_both_backends, poll_until, Home, Process, Repo, SERVE_DEADLINE};

/// `orch worker --server <server>` with its own home, one slot, the worker token from the
/// daemon's home in the environment.
fn remote_worker(home: &Home, server_home: &Home, server: &str) -> Process {
    let token = std::fs::read_to_string(server_home.path().join("worker-token")).unwrap();
    home.spawn_with_env(
        &[
            "worker", "--server", server, "--name", "remote-1", "--slots", "1", "--lease", "5s",
        ],
        &[("ORCH_WORKER_TOKEN", token.trim())],
    )
}

/// Whether every run was the remote worker's (its slots are `remote-1-N`).
fn on_the_remote_worker(runs: &Value) -> bool {
    let runs = runs.as_array().unwrap();
    !runs.is_empty()
        && runs
            .iter()
            .all(|r| r["owner"].as_str().unwrap().starts_with("remote-1-"))
}

/// The tasks of the daemon (`orch task list --json`, through its API) whose parent is
/// `parent`, oldest first.
fn children_of(home: &Home, parent: i64) -> Vec<Value> {
    let mut kids: Vec<Value> = home
        .json(&["task", "list", "--all", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|task| task["parent"] == parent)
        .cloned()
        .collect();
    kids.sort_by_key(|task| task["id"].as_i64());
    kids
}

fn a_remote_workers_planner_makes_children_and_the_parent_continues_with_their_results(home: Home) {
    let repo = Repo::new(&[
        ("README.md", "# widgets\n"),
        (".orch.toml", "default_agent = \"sim\"\n"),
    ]);
    let (serve, url) = serve_linked(&home, &repo, "0");
    let server = format!("http://{}", home.serve_addr());
    let worker_home = Home::new();
    let worker = remote_worker(&worker_home, &home, &server);

    let payload = issue_payload(3, "Ship the widget", PLAN_BODY, &["orch", "plan"]);
    let (status, created) = deliver(&url, "issues", "remote-plan-1", &payload);
    assert!(status == 201 || status == 200, "{status} {created}");
    let parent = created["task"].as_i64().unwrap();

    // The remote worker's planner made two children through the daemon.
    let kids = poll_until("the planned children", SERVE_DEADLINE, || {
        let kids = children_of(&home, parent);
        (kids.len() == 2).then_some(kids)
    });
    assert_eq!(kids[0]["title"], "Part one", "{kids:?}");
    assert_eq!(kids[1]["title"], "Part two", "{kids:?}");
    await_children(&home, parent);
    // The plan is in the planner run's bundle, uploaded to the daemon.
    let plan_json = poll_until("plan.json in the daemon's bundle", SERVE_DEADLINE, || {
        std::fs::read(home.run_dir(parent, 1).join("plan.json")).ok()
    });
    let plan: Value = serde_json::from_slice(&plan_json).unwrap();
    assert_eq!(plan["tasks"][1]["title"], "Part two", "{plan}");

    // The tree, through the daemon's API, lists the children under the parent.
    let tree = home.run(&["task", "list", "--tree", "--server", &server]);
    tree.expect_code(0, "task list --tree");
    let lines: Vec<&str> = tree.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("Ship the widget"))
        .unwrap_or_else(|| panic!("{}", tree.stdout));
    for (offset, part) in ["Part one", "Part two"].iter().enumerate() {
        assert!(
            lines[at + 1 + offset].contains(&format!("└ {part}")),
            "{}",
            tree.stdout
        );
    }

    // The children run, then the parent's next step, all on the remote worker.
    let done = poll_until("the parent done", SERVE_DEADLINE, || {
        let detail = home.task(parent);
        (detail["task"]["status"] == "done").then_some(detail)
    });
    let runs = done["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "the planner, then the work: {done:#}");
    for kid in &kids {
        let id = kid["id"].as_i64().unwrap();
        let child = home.task(id);
        assert_eq!(child["task"]["status"], "done", "{child:#}");
        assert_eq!(child["task"]["parent"], parent, "{child:#}");
        assert_eq!(child["task"]["project"], done["task"]["project"]);
        assert!(on_the_remote_worker(&child["runs"]), "{child:#}");
    }
    assert!(on_the_remote_worker(&done["runs"]), "{done:#}");
    // Its second run saw the children's results (the context the remote worker wrote).
    assert_saw_children(&worker_home.run_dir(parent, 2).join("context.json"));
    // Nothing was planned twice.
    assert_eq!(children_of(&home, parent).len(), 2);
    drop(worker);
    drop(serve);
}

on_both_backends!(
    a_remote_workers_planner_makes_children_and_the_parent_continues_with_their_results
);
