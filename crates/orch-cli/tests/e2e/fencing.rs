//! A claimer paused past its lease (SIGSTOP) comes back to find its fencing token stale: its
//! heartbeat and its completion are refused and recorded, and the task is completed once.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::support::{events_named, int, on_both_backends, poll_until, Home};

on_both_backends!(a_paused_claimer_whose_lease_expired_is_refused_and_the_task_completes_once);

fn a_paused_claimer_whose_lease_expired_is_refused_and_the_task_completes_once(home: Home) {
    let ids = home.submit_tasks(1, 3);
    let task = ids[0];

    let mut paused = home.spawn(&[
        "debug",
        "claim-loop",
        "--owner",
        "paused",
        "--lease-ms",
        "1000",
        "--hold-ms",
        "8000",
        "--heartbeat-ms",
        "200",
        "--complete-after-lost-lease",
        "--max",
        "1",
    ]);
    let claimed = paused.wait_for_event("claimed", Duration::from_secs(20));
    // Stopped right after printing, long before its first heartbeat (200 ms), so it is asleep
    // and holds no database lock.
    paused.signal(Signal::SIGSTOP);
    assert_eq!(int(&claimed, "task"), task);
    assert_eq!(int(&claimed, "attempt"), 1);
    let lost_run = int(&claimed, "run");
    // The claim prints a fingerprint of its secret token, never the token itself.
    let stale_token = claimed["token"]
        .as_str()
        .expect("a token fingerprint")
        .to_owned();
    assert_eq!(stale_token.len(), 8, "{claimed}");

    // Stale recovery only takes the run once its lease (1 s) has expired.
    let recovery = poll_until(
        "stale recovery of the paused run",
        Duration::from_secs(20),
        || {
            let report = home.json(&["recover", "--json"]);
            let recovered = report["recovered"].as_array()?;
            (!recovered.is_empty()).then_some(report)
        },
    );
    assert_eq!(
        recovery["recovered"],
        json!([{ "run": lost_run, "task": task, "status": "retry_wait" }])
    );
    assert_eq!(
        recovery["requeued"],
        json!([task]),
        "a backoff of 0s queues the task in the same pass"
    );

    let second = home.run(&["debug", "claim-loop", "--owner", "second", "--max", "1"]);
    second.expect_code(0, "the second claimer");
    let lines = second.json_lines();
    let second_claim = events_named(&lines, "claimed");
    assert_eq!(second_claim.len(), 1, "{lines:?}");
    assert_eq!(int(second_claim[0], "task"), task);
    assert_eq!(int(second_claim[0], "attempt"), 2);
    let second_run = int(second_claim[0], "run");
    assert_ne!(second_claim[0]["token"], stale_token.as_str());
    let completed = events_named(&lines, "completed");
    assert_eq!(completed.len(), 1, "{lines:?}");
    assert_eq!(completed[0]["status"], "done");

    paused.signal(Signal::SIGCONT);
    let resumed = paused.finish(Duration::from_secs(20));
    resumed.expect_code(0, "the resumed claimer");
    let lines = resumed.json_lines();
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l["event"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        ["claimed", "heartbeat_refused", "complete_refused", "exit"],
        "{lines:?}"
    );
    for refused in &lines[1..3] {
        assert_eq!(int(refused, "task"), task);
        assert_eq!(int(refused, "run"), lost_run);
    }
    assert_eq!(int(&lines[3], "claims"), 1);

    let got = home.json(&["task", "get", &task.to_string(), "--json"]);
    assert_eq!(got["task"]["status"], "done");
    let runs: Vec<(&Value, &Value, &Value, &Value)> = got["runs"]
        .as_array()
        .expect("`runs` is a list")
        .iter()
        .map(|r| (&r["id"], &r["attempt"], &r["owner"], &r["state"]))
        .collect();
    assert_eq!(
        runs,
        [
            (
                &json!(lost_run),
                &json!(1),
                &json!("paused"),
                &json!("lost")
            ),
            (
                &json!(second_run),
                &json!(2),
                &json!("second"),
                &json!("succeeded")
            ),
        ]
    );
    let events = got["events"].as_array().expect("`events` is a list");
    let completes: Vec<&Value> = events.iter().filter(|e| e["kind"] == "complete").collect();
    assert_eq!(completes.len(), 1, "one complete event: {events:?}");
    assert_eq!(completes[0]["run"], second_run);
    let refusals: Vec<&Value> = events.iter().filter(|e| e["kind"] == "refused").collect();
    assert_eq!(
        refusals.len(),
        2,
        "the heartbeat and the completion: {events:?}"
    );
    assert!(
        got["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .all(|r| r.get("token").is_none()),
        "no token in the run view: {got}"
    );
    for refusal in &refusals {
        assert_eq!(refusal["run"], lost_run);
        assert_eq!(
            refusal["data"]["token"],
            stale_token.as_str(),
            "a fingerprint"
        );
        assert_eq!(refusal["actor"], "paused");
        assert_eq!(
            (&refusal["from"], &refusal["to"]),
            (&json!("done"), &json!("done")),
            "a refusal records a note and changes nothing"
        );
    }
    let reasons: Vec<&str> = refusals
        .iter()
        .map(|r| r["reason"].as_str().unwrap_or_default())
        .collect();
    assert!(
        reasons[0].starts_with("heartbeat refused") && reasons[1].starts_with("completion refused"),
        "{reasons:?}"
    );
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        [
            "create",
            "claim",
            "lose",
            "retry_due",
            "claim",
            "complete",
            "refused",
            "refused"
        ]
    );
    home.assert_consistent("after the paused claimer was refused");
}

#[test]
fn cancelling_a_running_task_voids_the_lease_of_the_process_working_on_it() {
    let home = Home::new();
    let task = home.submit_tasks(1, 3)[0];
    let mut worker = home.spawn(&[
        "debug",
        "claim-loop",
        "--owner",
        "worker",
        "--hold-ms",
        "20000",
        "--heartbeat-ms",
        "50",
        "--max",
        "1",
    ]);
    let claimed = worker.wait_for_event("claimed", Duration::from_secs(20));
    let run = int(&claimed, "run");

    let cancelled = home.json(&[
        "task",
        "cancel",
        &task.to_string(),
        "--reason",
        "changed my mind",
        "--json",
    ]);
    assert_eq!(cancelled, json!({ "id": task, "status": "cancelled" }));
    let refused = worker.wait_for_event("heartbeat_refused", Duration::from_secs(20));
    assert_eq!(int(&refused, "run"), run);
    let finished = worker.finish(Duration::from_secs(20));
    finished.expect_code(0, "the worker whose task was cancelled");
    assert!(
        events_named(&finished.json_lines(), "completed").is_empty(),
        "a worker without --complete-after-lost-lease does not try to complete"
    );

    let got = home.json(&["task", "get", &task.to_string(), "--json"]);
    assert_eq!(got["task"]["status"], "cancelled");
    assert_eq!(got["runs"][0]["state"], "cancelled");
    let kinds: Vec<&str> = got["events"]
        .as_array()
        .expect("`events` is a list")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["create", "claim", "cancel", "refused"]);
    home.assert_consistent("after cancelling a running task");
}
