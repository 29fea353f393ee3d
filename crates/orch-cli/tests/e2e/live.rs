//! Live sessions: with `session = "tmux"` an agent runs inside a tmux session named after its
//! task on orch's own tmux server; `orch task live` lists it, `orch task attach --capture` shows
//! its pane, `orch task kill` ends it, and its output still lands in the bundle.

use std::time::Duration;

use crate::support::{poll_until, read_text, Home, Repo, SERVE_DEADLINE};

fn tmux_repo() -> Repo {
    let repo = Repo::new(&[("README.md", "hi\n")]);
    std::fs::write(
        repo.path().join(".orch.toml"),
        "[agents]\nsession = \"tmux\"\n",
    )
    .unwrap();
    repo.git(&["add", ".orch.toml"]);
    repo.git(&["commit", "-qm", "live sessions"]);
    repo
}

fn sim_task(prompt: &str) -> String {
    let prompt: String = prompt.lines().map(|l| format!("          {l}\n")).collect();
    format!("tasks:\n  - id: t\n    title: live\n    steps:\n      - name: work\n        agent: sim\n        prompt: |\n{prompt}")
}

#[test]
fn a_live_sim_session_can_be_listed_captured_and_killed() {
    let home = Home::new();
    let repo = tmux_repo();
    let id = home.submit(
        "live",
        &sim_task("@write a.txt\nhello\n@end\n@say working on it\n@sleep 60000\n@say finished"),
        repo.path(),
    )["t"];
    let serve = home.serve(&[
        "--workers",
        "1",
        "--lease",
        "5s",
        "--grace",
        "1s",
        "--exit-when-idle",
    ]);

    let session = poll_until(
        "the live session is listed",
        Duration::from_secs(30),
        || {
            let live = home.json(&["task", "live", "--json"]);
            live["sessions"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["task"] == id).cloned())
        },
    );
    assert_eq!(session["name"], format!("orch-task-{id}"));
    let text = home.run(&["task", "live"]);
    assert!(
        text.stdout.contains(&format!("orch-task-{id}")),
        "{}",
        text.stdout
    );

    let pane = poll_until("the pane shows the agent", Duration::from_secs(20), || {
        let captured = home.run(&["task", "attach", &id.to_string(), "--capture"]);
        (captured.code == Some(0) && captured.stdout.contains("working on it"))
            .then_some(captured.stdout)
    });
    assert!(pane.contains("write_file"), "{pane}");
    // Attaching needs a terminal; the error says what to do instead.
    let refused = home.run(&["task", "attach", &id.to_string()]);
    assert_eq!(refused.code, Some(2));
    assert!(refused.stderr.contains("--capture"), "{}", refused.stderr);

    let killed = home.json(&["task", "kill", &id.to_string(), "--json"]);
    assert_eq!(killed["killed"], true);
    let finished = serve.finish(SERVE_DEADLINE);
    finished.expect_code(0, "orch serve after the kill");
    assert_eq!(home.task_status(id), "cancelled");
    let live = home.json(&["task", "live", "--json"]);
    assert!(live["sessions"].as_array().unwrap().is_empty(), "{live:#}");

    // What the agent printed before it was ended is in the bundle.
    let run = home.run_dir(id, 1);
    let stdout = read_text(&run.join("steps/work/stdout.log"));
    assert!(stdout.contains("working on it"), "{stdout}");
    let events = read_text(&run.join("steps/work/events.jsonl"));
    assert!(
        events.contains("\"tool_call\"") && events.contains("write_file"),
        "{events}"
    );
    // Nothing is left running: no session, and `kill` of a finished task says so.
    let again = home.run(&["task", "kill", &id.to_string()]);
    assert_eq!(again.code, Some(2), "{}", again.stderr);
}

#[test]
fn a_live_session_that_finishes_by_itself_leaves_a_complete_bundle() {
    let home = Home::new();
    let repo = tmux_repo();
    let id = home.submit(
        "live",
        &sim_task("@write b.txt\nbee\n@end\n@say all good"),
        repo.path(),
    )["t"];
    home.serve_until_idle(1);
    let task = home.task(id);
    assert_eq!(task["task"]["status"], "done", "{task:#}");
    let run = home.run_dir(id, 1);
    let events = read_text(&run.join("steps/work/events.jsonl"));
    assert!(events.contains("\"result\""), "{events}");
    assert!(read_text(&run.join("patch.diff")).contains("+bee"));
    let usage = &task["usage"]["sessions"][0];
    assert_eq!(usage["agent"], "sim");
    assert!(usage["session_id"].as_str().unwrap().starts_with("sim-"));
    let live = home.json(&["task", "live", "--json"]);
    assert!(live["sessions"].as_array().unwrap().is_empty(), "{live:#}");
}
