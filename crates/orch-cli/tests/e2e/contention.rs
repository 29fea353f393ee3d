//! Several OS processes claiming from one database: each task is claimed and completed once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support::{events_named, int, on_both_backends, Home, Process};

const TASKS: usize = 200;
const WORKERS: usize = 4;

on_both_backends!(
    four_claim_loop_processes_on_one_database_claim_and_complete_every_task_exactly_once
);

fn four_claim_loop_processes_on_one_database_claim_and_complete_every_task_exactly_once(
    home: Home,
) {
    let ids: BTreeSet<i64> = home.submit_tasks(TASKS, 3).into_iter().collect();

    let owners: Vec<String> = (1..=WORKERS).map(|n| format!("worker-{n}")).collect();
    let workers: Vec<Process> = owners
        .iter()
        .map(|owner| {
            home.spawn(&[
                "debug",
                "claim-loop",
                "--owner",
                owner,
                "--hold-ms",
                "2",
                "--idle-polls",
                "3",
            ])
        })
        .collect();
    let outputs: Vec<_> = workers
        .into_iter()
        .map(|w| w.finish(Duration::from_secs(40)))
        .collect();

    // task -> the owners that claimed it / completed it, from the workers' own reports.
    let mut claimed_by: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    let mut completed_by: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    let mut owners_with_claims = 0;
    for (owner, output) in owners.iter().zip(&outputs) {
        output.expect_code(0, owner);
        let lines = output.json_lines();
        let claims = events_named(&lines, "claimed");
        if !claims.is_empty() {
            owners_with_claims += 1;
        }
        for line in &claims {
            claimed_by.entry(int(line, "task")).or_default().push(owner);
            assert_eq!(line["attempt"], 1, "nothing was lost, so nothing retried");
        }
        for line in events_named(&lines, "completed") {
            assert_eq!(line["status"], "done", "{owner}: {line}");
            completed_by
                .entry(int(line, "task"))
                .or_default()
                .push(owner);
        }
        for refused in ["heartbeat_refused", "complete_refused"] {
            let refusals = events_named(&lines, refused);
            assert!(refusals.is_empty(), "{owner}: {refusals:?}");
        }
        let exit = events_named(&lines, "exit");
        assert_eq!(exit.len(), 1, "{owner} reports its exit once");
        assert_eq!(int(exit[0], "claims"), claims.len() as i64);
    }
    let shared: Vec<_> = claimed_by.iter().filter(|(_, o)| o.len() != 1).collect();
    assert!(
        shared.is_empty(),
        "tasks claimed more than once: {shared:?}"
    );
    let twice: Vec<_> = completed_by.iter().filter(|(_, o)| o.len() != 1).collect();
    assert!(
        twice.is_empty(),
        "tasks completed more than once: {twice:?}"
    );
    assert_eq!(claimed_by.keys().copied().collect::<BTreeSet<_>>(), ids);
    assert_eq!(completed_by.keys().copied().collect::<BTreeSet<_>>(), ids);
    // 200 tasks held 2 ms each take far longer than starting a process, so the workers overlap.
    assert!(
        owners_with_claims >= 2,
        "at least two processes competed for the queue; claims per owner: {:?}",
        outputs
            .iter()
            .map(|o| events_named(&o.json_lines(), "claimed").len())
            .collect::<Vec<_>>()
    );

    let (total, by_status) = home.status_counts();
    assert_eq!(total, TASKS as i64);
    assert_eq!(by_status["done"], TASKS as i64, "{by_status:?}");
    assert_eq!(
        home.query_int("SELECT COUNT(*) FROM runs"),
        TASKS as i64,
        "one run per task"
    );
    assert_eq!(
        home.query_int("SELECT COUNT(*) FROM events WHERE kind = 'claim'"),
        TASKS as i64
    );
    assert_eq!(
        home.query_int("SELECT COUNT(*) FROM events WHERE kind = 'complete'"),
        TASKS as i64
    );
    home.assert_consistent("after four workers drained the queue");
}
