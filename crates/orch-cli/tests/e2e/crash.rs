//! A worker process killed with SIGKILL at random moments, again and again: no task is lost,
//! none is completed twice, the database stays consistent, and a last worker finishes the rest.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;

use crate::support::{events_named, int, on_both_backends, poll_until, Home, SERVE_DEADLINE};

const TASKS: usize = 300;
const KILLS: usize = 20;
/// Short, so that the leases of killed workers expire quickly and their tasks are retried.
const LEASE_MS: &str = "300";

on_both_backends!(a_worker_killed_at_random_moments_loses_no_task_and_completes_none_twice);

fn a_worker_killed_at_random_moments_loses_no_task_and_completes_none_twice(home: Home) {
    // Each kill loses at most the one run the worker held, so no task can use up its attempts.
    let max_attempts = u32::try_from(KILLS).expect("small") + 1;
    home.submit_tasks(TASKS, max_attempts);
    let mut rng = rand::rng();
    let mut completions: BTreeMap<i64, usize> = BTreeMap::new();
    let mut interrupted_claims = 0;

    for kill in 1..=KILLS {
        let owner = format!("doomed-{kill}");
        let hold_ms = rng.random_range(1..=5_u32).to_string();
        let worker = home.spawn(&[
            "debug",
            "claim-loop",
            "--owner",
            &owner,
            "--lease-ms",
            LEASE_MS,
            "--hold-ms",
            &hold_ms,
            // Never stop on its own: only the kill ends it.
            "--idle-polls",
            "100000",
        ]);
        // A worker still starting up (a busy machine) cannot be killed holding a claim: wait
        // for its first run, then kill it at a random moment of its work.
        poll_until(&format!("{owner} to claim a task"), SERVE_DEADLINE, || {
            (home.query_int(&format!(
                "SELECT COUNT(*) FROM runs WHERE owner = '{owner}'"
            )) > 0)
                .then_some(())
        });
        // The random moment of the crash is the point of this sleep; it waits for no event.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..=100)));
        let killed = worker.kill();
        assert_eq!(
            killed.code, None,
            "{owner} ran until killed\nstderr:\n{}",
            killed.stderr
        );
        let lines = killed.json_lines();
        let completed_runs: Vec<i64> = events_named(&lines, "completed")
            .iter()
            .map(|l| int(l, "run"))
            .collect();
        interrupted_claims += events_named(&lines, "claimed")
            .iter()
            .filter(|claim| !completed_runs.contains(&int(claim, "run")))
            .count();
        for line in events_named(&lines, "completed") {
            *completions.entry(int(line, "task")).or_default() += 1;
        }

        let when = format!("after kill {kill} of {KILLS}");
        home.assert_consistent(&when);
        let (total, _) = home.status_counts();
        assert_eq!(total, TASKS as i64, "{when}: no task disappeared");
    }
    let last = home.run(&[
        "debug",
        "claim-loop",
        "--owner",
        "survivor",
        "--lease-ms",
        LEASE_MS,
        "--hold-ms",
        "1",
        // 20 idle polls are a second: long enough for the last killed lease to expire and be
        // recovered, retried and claimed again.
        "--idle-polls",
        "20",
    ]);
    last.expect_code(0, "the last worker");
    for line in events_named(&last.json_lines(), "completed") {
        *completions.entry(int(line, "task")).or_default() += 1;
    }
    let twice: Vec<_> = completions.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "workers completed tasks twice: {twice:?}");

    let (total, by_status) = home.status_counts();
    assert_eq!(total, TASKS as i64);
    assert_eq!(by_status["done"], TASKS as i64, "{by_status:?}");
    assert_eq!(
        home.query_int("SELECT COUNT(*) FROM events WHERE kind = 'complete'"),
        TASKS as i64
    );
    let lost_runs = home.query_int("SELECT COUNT(*) FROM runs WHERE state = 'lost'");
    assert!(
        lost_runs <= KILLS as i64,
        "each kill loses at most one run, but {lost_runs} runs were lost"
    );
    // Guards the test itself: if no kill had landed while a claim was held, stale recovery
    // would not have been exercised.
    assert!(
        lost_runs > 0,
        "no kill interrupted a held claim ({interrupted_claims} claims were cut short)"
    );
    assert_eq!(
        home.query_int("SELECT COUNT(*) FROM events WHERE kind = 'lose'"),
        lost_runs,
        "every lost run has its `lose` event"
    );
    assert_eq!(
        home.query_int("SELECT COUNT(*) FROM runs WHERE state = 'active'"),
        0
    );
    home.assert_consistent("after the last worker finished");
    eprintln!("{interrupted_claims} of {KILLS} kills interrupted a held claim; {lost_runs} runs were lost");
}
