//! `orch doctor` on a database broken by hand: it exits 1 and names the task.

use serde_json::Value;

use crate::support::{int, Home};

/// A home with five tasks, the first two done by a worker, the rest queued.
fn home_with_work_done() -> (Home, Vec<i64>) {
    let home = Home::new();
    let ids = home.submit_tasks(5, 3);
    home.run(&["debug", "claim-loop", "--owner", "w", "--max", "2"])
        .expect_code(0, "claim-loop --max 2");
    home.assert_consistent("before the damage");
    (home, ids)
}

fn problems_of(report: &Value) -> Vec<(i64, String)> {
    report["problems"]
        .as_array()
        .expect("`problems` is a list")
        .iter()
        .map(|p| {
            (
                int(p, "task"),
                p["problem"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn doctor_exits_1_and_names_a_queued_task_whose_status_was_set_to_done_by_hand() {
    let (home, ids) = home_with_work_done();
    let victim = ids[3];
    let changed = home.execute(&format!(
        "UPDATE tasks SET status = 'done' WHERE id = {victim} AND status = 'queued'"
    ));
    assert_eq!(changed, 1, "task {victim} was queued");

    let text = home.run(&["doctor"]);
    text.expect_code(1, "orch doctor on a damaged database");
    assert!(
        text.stdout.contains(&format!(
            "task {victim}: the task is done but its events replay to queued"
        )),
        "{}",
        text.stdout
    );

    let json = home.run(&["doctor", "--json"]);
    json.expect_code(1, "orch doctor --json on a damaged database");
    let report = json.json();
    assert_eq!(report["ok"], false);
    assert_eq!(report["tasks"], 5);
    let problems = problems_of(&report);
    assert!(
        problems.iter().any(|(task, _)| *task == victim),
        "{problems:?}"
    );
    assert!(
        problems.iter().all(|(task, _)| *task == victim),
        "only the damaged task is named: {problems:?}"
    );
}

#[test]
fn doctor_exits_1_when_a_done_task_still_has_an_active_run() {
    let (home, ids) = home_with_work_done();
    let victim = ids[0];
    let changed = home.execute(&format!(
        "UPDATE runs SET state = 'active', ended_at = NULL WHERE task_id = {victim}"
    ));
    assert_eq!(changed, 1, "task {victim} had one run");

    let json = home.run(&["doctor", "--json"]);
    json.expect_code(1, "orch doctor --json with a stray active run");
    let report = json.json();
    assert_eq!(report["ok"], false);
    let problems = problems_of(&report);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, victim);
    assert!(problems[0].1.contains("active run"), "{problems:?}");
}
