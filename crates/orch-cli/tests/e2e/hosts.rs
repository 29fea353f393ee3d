//! Several daemons on one database, and a daemon's start in a busy home: the `scheduler` lease
//! (one leader runs stale recovery, backoff timers and retention; another takes over within one
//! lease period when it dies), per-home instance ids (a restarting daemon releases only its own
//! runs), the event stream of one daemon showing what another did, and retention never delaying
//! stale recovery.
//!
//! The daemons share a database through `--database` ([`SharedDatabase`]); the checks read state
//! through the CLI, so the same tests can run on PostgreSQL.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::support::{
    event_time, git, on_both_backends, poll_until, task_events, Home, Process, Repo,
    SharedDatabase, COMMAND_DEADLINE, SERVE_DEADLINE,
};

/// The scheduler lease of a daemon with the default 100 ms tick: max(3 ticks, 2 s).
const LEADER_LEASE: Duration = Duration::from_secs(2);
/// The daemon's scheduler tick (the default).
const TICK: Duration = Duration::from_millis(100);

/// The address the daemon of `home` serves on, once it is up.
fn address(home: &Home) -> String {
    poll_until("serve.addr", SERVE_DEADLINE, || {
        let addr = std::fs::read_to_string(home.path().join("serve.addr")).ok()?;
        Some(addr.trim().to_owned()).filter(|a| !a.is_empty())
    })
}

/// `GET path` on `addr` (no token: `/metrics` is open), the body.
fn http_get(addr: &str, path: &str) -> String {
    let mut stream =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(COMMAND_DEADLINE))
        .expect("set a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    response
}

/// Whether the daemon at `addr` says it leads (`orch_scheduler_leader 1`).
fn leads(addr: &str) -> bool {
    let metrics = http_get(addr, "/metrics");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("orch_scheduler_leader "))
        .unwrap_or_else(|| panic!("no orch_scheduler_leader in /metrics: {metrics}"));
    line.ends_with(" 1")
}

/// Start a daemon with `workers` embedded workers and wait for its API.
fn start(home: &Home, workers: usize, extra: &[&str]) -> (Process, String) {
    let workers = workers.to_string();
    let mut args = vec![
        "--workers",
        workers.as_str(),
        "--lease",
        "1s",
        "--grace",
        "1s",
    ];
    args.extend_from_slice(extra);
    let serve = home.serve(&args);
    let addr = address(home);
    (serve, addr)
}

/// Claim one task as `owner` with a 1 s lease from a separate process, wait for the claim, and
/// kill the claimer (a worker that died): its run's lease expires 1 s later.
fn claim_and_die(home: &Home, owner: &str) -> i64 {
    let mut claimer = home.spawn(&[
        "debug",
        "claim-loop",
        "--owner",
        owner,
        "--lease-ms",
        "1000",
        "--hold-ms",
        "600000",
        "--max",
        "1",
    ]);
    let claimed = claimer.wait_for_event("claimed", COMMAND_DEADLINE);
    claimer.kill();
    claimed["task"].as_i64().expect("a task id")
}

/// The task's `lose` event, once there is one.
fn lost_at(home: &Home, task: i64, timeout: Duration) -> SystemTime {
    poll_until("the run to be recovered", timeout, || {
        let task = home.task(task);
        task_events(&task, "lose").first().map(|e| event_time(e))
    })
}

fn since(start: SystemTime, at: SystemTime) -> Duration {
    at.duration_since(start).unwrap_or(Duration::ZERO)
}

on_both_backends!(
    shared: when_the_leader_dies_another_daemon_takes_over_stale_recovery_within_one_lease_period,
    a_restarting_daemon_releases_only_its_own_runs_and_the_stream_of_one_shows_the_others_work,
);

fn when_the_leader_dies_another_daemon_takes_over_stale_recovery_within_one_lease_period(
    database: SharedDatabase,
) {
    let (a, b) = (Home::on(&database), Home::on(&database));
    let (serve_a, addr_a) = start(&a, 0, &[]);
    poll_until("the first daemon to lead", SERVE_DEADLINE, || {
        leads(&addr_a).then_some(())
    });
    let (_serve_b, addr_b) = start(&b, 0, &[]);
    // One leader at a time: the second daemon follows while the first renews.
    let task = a.json(&["task", "add", "held by a worker that dies", "--json"]);
    let task = task["id"].as_i64().expect("an id");
    assert!(
        !leads(&addr_b),
        "the second daemon does not lead while the first is alive"
    );
    // A worker claims the task and dies with the leader.
    assert_eq!(claim_and_die(&a, "remote-gone"), task);
    let killed = SystemTime::now();
    serve_a.kill();
    let lost = lost_at(&b, task, SERVE_DEADLINE);
    let took = since(killed, lost);
    println!("the second daemon recovered the run {took:?} after the leader died");
    // The leader's lease runs out at most one lease period after its last renewal; the run's
    // own lease (1 s) is shorter. The follower takes over at its next tick.
    assert!(
        took <= LEADER_LEASE + TICK + Duration::from_secs(1),
        "recovered {took:?} after the leader died; the lease is {LEADER_LEASE:?}"
    );
    assert!(leads(&addr_b), "the second daemon leads now");
    let status = b.task_status(task);
    assert!(
        status == "retry_wait" || status == "queued",
        "the task waits for its retry: {status}"
    );
    b.assert_consistent("after the takeover");
}

fn a_restarting_daemon_releases_only_its_own_runs_and_the_stream_of_one_shows_the_others_work(
    database: SharedDatabase,
) {
    let (a, b) = (Home::on(&database), Home::on(&database));
    let repo = Repo::new(&[("a.txt", "a\n")]);
    // Two long tasks, one claimed by each daemon's embedded worker.
    let yaml = "name: two\ntasks:\n  - id: one\n    title: one\n    steps:\n      - name: wait\n        exec:\n          - argv: [sleep, '600']\n  - id: two\n    title: two\n    steps:\n      - name: wait\n        exec:\n          - argv: [sleep, '600']\n";
    let ids = a.submit("two.yml", yaml, repo.path());
    let (serve_a, _) = start(&a, 1, &[]);
    let (serve_b, _) = start(&b, 1, &[]);
    let owners = poll_until("both tasks to be running", SERVE_DEADLINE, || {
        let owners: Vec<(i64, String)> = ids
            .values()
            .map(|id| {
                let task = a.task(*id);
                let claim = task_events(&task, "claim")
                    .last()
                    .map(|e| e["actor"].as_str().unwrap_or("").to_owned());
                (*id, claim.unwrap_or_default())
            })
            .collect();
        owners.iter().all(|(_, o)| !o.is_empty()).then_some(owners)
    });
    let instance_a =
        std::fs::read_to_string(a.path().join("instance-id")).expect("a's instance id");
    let instance_b =
        std::fs::read_to_string(b.path().join("instance-id")).expect("b's instance id");
    let (instance_a, instance_b) = (instance_a.trim(), instance_b.trim());
    assert_ne!(instance_a, instance_b, "each home has its own instance id");
    let run_of = |instance: &str| {
        owners
            .iter()
            .find(|(_, owner)| owner.starts_with(&format!("embedded-{instance}-")))
            .map(|(id, _)| *id)
            .unwrap_or_else(|| panic!("no run of embedded-{instance}-N among {owners:?}"))
    };
    let (task_a, task_b) = (run_of(instance_a), run_of(instance_b));
    // a dies and comes back: it releases its own run at once, never b's live one.
    serve_a.kill();
    let (_serve_a, addr_a) = start(&a, 0, &[]);
    let released = poll_until("a's run to be released", SERVE_DEADLINE, || {
        let task = a.task(task_a);
        task_events(&task, "lose")
            .first()
            .map(|e| e["reason"].clone())
    });
    assert!(
        released.as_str().unwrap_or("").contains("restarted"),
        "released as a restart: {released}"
    );
    let task = a.task(task_b);
    assert_eq!(
        task["task"]["status"], "running",
        "b's run is untouched: {task}"
    );
    assert!(
        task_events(&task, "lose").is_empty(),
        "b's run was not released"
    );
    let _ = addr_a;
    // The stream of a's daemon shows what b's worker does: b cancels nothing, a's user cancels
    // through b's daemon.
    let mut stream = a.spawn(&["stream", &task_b.to_string()]);
    stream.wait_for_line("is running", COMMAND_DEADLINE);
    b.run(&["task", "cancel", &task_b.to_string()])
        .expect_code(0, "cancel through b");
    let line = stream.wait_for_line("cancel", SERVE_DEADLINE);
    assert!(line.contains("running -> cancelled"), "{line}");
    drop(serve_b);
}

/// `count` finished tasks, each with a git worktree retention has to look at (git runs for each
/// one: is the branch merged?), in `home`, all on the repository `repo`.
fn finished_tasks_with_worktrees(home: &Home, repo: &Path, count: usize) {
    let ids = home.submit_tasks(count, 3);
    // A thousand claims and completions: seconds on a quiet machine, more under load.
    let finished = home
        .spawn(&[
            "debug",
            "claim-loop",
            "--owner",
            "bulk",
            "--max",
            &count.to_string(),
            "--idle-polls",
            "1",
        ])
        .finish(Duration::from_secs(180));
    finished.expect_code(0, "finish the tasks");
    let (_, counts) = home.status_counts();
    assert_eq!(
        counts.get("done").copied(),
        Some(count as i64),
        "{counts:?}"
    );
    let head = git(repo, &["rev-parse", "HEAD"]);
    let head = head.trim();
    let common = std::fs::canonicalize(repo.join(".git")).expect("the repository's git dir");
    let group = home.path().join("worktrees").join("repo-0");
    std::fs::create_dir_all(&group).expect("create the worktrees group");
    let group = std::fs::canonicalize(&group).expect("canonical group");
    let mut refs = String::new();
    for id in ids {
        let worktree = group.join(id.to_string());
        std::fs::create_dir_all(&worktree).expect("create a worktree");
        std::fs::write(worktree.join("work.txt"), "work\n").expect("write into the worktree");
        let branch = format!("orch/{id}-task");
        std::fs::write(
            group.join(format!("{id}.base")),
            format!(
                "{head} {branch}\nworktree {}\nadmin {}\ncommon {}\n",
                worktree.display(),
                common.join("worktrees").join(id.to_string()).display(),
                common.display()
            ),
        )
        .expect("write the base record");
        refs.push_str(&format!("create refs/heads/{branch} {head}\n"));
    }
    // One git process for every branch (merged: they point at the main branch's tip).
    let mut update = std::process::Command::new("git")
        .args(["update-ref", "--stdin"])
        .current_dir(repo)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("start git update-ref");
    update
        .stdin
        .take()
        .expect("piped")
        .write_all(refs.as_bytes())
        .expect("write the refs");
    assert!(update.wait().expect("git update-ref").success());
}

#[test]
fn a_daemon_started_in_a_home_with_a_thousand_finished_tasks_recovers_expired_leases_first() {
    let home = Home::new();
    let repo = Repo::new(&[("a.txt", "a\n")]);
    finished_tasks_with_worktrees(&home, repo.path(), 1000);
    // What one retention pass costs here (it only looks, with --dry-run).
    let started = Instant::now();
    home.spawn(&["gc", "--dry-run", "--json"])
        .finish(Duration::from_secs(180))
        .expect_code(0, "gc --dry-run");
    println!(
        "a retention pass over 1,000 worktrees takes {:?}",
        started.elapsed()
    );
    // A task whose worker died holding it.
    home.json(&["task", "add", "held by a worker that dies", "--json"]);
    let task = claim_and_die(&home, "remote-gone");
    let expired = SystemTime::now() + Duration::from_secs(1);
    poll_until("the run's lease to expire", COMMAND_DEADLINE, || {
        (SystemTime::now() > expired).then_some(())
    });
    let started = SystemTime::now();
    let (serve, _) = start(&home, 0, &[]);
    let lost = lost_at(&home, task, SERVE_DEADLINE);
    let took = since(started, lost);
    println!("the restarted daemon recovered the expired lease {took:?} after it started");
    // Process start, then the first tick; never behind retention's git.
    assert!(
        took <= Duration::from_secs(1) + TICK + Duration::from_millis(1500),
        "the expired lease was recovered {took:?} after the daemon started"
    );
    // Retention still runs, in its own task: the merged worktrees go.
    poll_until(
        "retention to remove the merged worktrees",
        SERVE_DEADLINE,
        || {
            let left = std::fs::read_dir(home.path().join("worktrees").join("repo-0"))
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| e.path().is_dir())
                        .count()
                })
                .unwrap_or(0);
            (left == 0).then_some(())
        },
    );
    drop(serve);
    home.assert_consistent("after the restart");
}
