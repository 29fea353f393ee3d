//! Several servers and remote workers on one PostgreSQL database, killed at random: every task
//! ends `done` exactly once, no stale completion is accepted, and the database stays consistent.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rand::Rng;

use crate::support::{poll_until, Backend, Home, Process, Repo, SERVE_DEADLINE};

/// Tasks in the workflow: chains of `CHAIN` tasks, alternating exec and `sim` steps.
const TASKS: usize = 2_000;
const CHAIN: usize = 10;
/// At least this many SIGKILLs before the driver stops killing.
const KILLS: usize = 100;
/// Kill-free time the run may take in the end before the test calls it stuck.
const SETTLE: Duration = Duration::from_secs(900);
/// The whole test's bound.
const DEADLINE: Duration = Duration::from_secs(1500);

/// One of the processes the driver kills and restarts.
struct Member {
    name: String,
    home: Home,
    args: Vec<String>,
    env: Vec<(String, String)>,
    process: Option<Process>,
}

impl Member {
    fn start(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.process = Some(self.home.spawn_with_env(&args, &env));
    }

    fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            let finished = process.kill();
            assert!(
                finished.code.is_none() || finished.code == Some(0),
                "{} died by itself before the kill (exit {:?}):\n{}",
                self.name,
                finished.code,
                finished.stderr
            );
        }
    }
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .unwrap_or_default()
}

/// The workflow: `TASKS` tasks in chains of `CHAIN`, each with one exec or `sim` step.
fn workflow() -> String {
    let mut yaml = "name: scale-out\ndefaults:\n  retry: {max_attempts: 100, backoff: 0s, max_backoff: 0s, jitter: 0s}\ntasks:\n".to_owned();
    for n in 1..=TASKS {
        yaml.push_str(&format!("  - id: t{n}\n    title: Task {n}\n"));
        if n % CHAIN != 1 {
            yaml.push_str(&format!("    needs: [t{}]\n", n - 1));
        }
        if n % 2 == 0 {
            yaml.push_str(&format!(
                "    steps:\n      - name: note\n        exec:\n          - argv: [touch, note-{n}.txt]\n"
            ));
        } else {
            yaml.push_str(&format!(
                "    steps:\n      - name: write\n        agent: sim\n        prompt: |\n          Write the note.\n          @write note-{n}.txt\n          note {n}\n          @end\n"
            ));
        }
    }
    yaml
}

#[test]
fn two_servers_and_four_workers_on_postgres_killed_at_random_finish_every_task_once() {
    let Some(first) = Home::with_backend(
        Backend::Postgres,
        "two_servers_and_four_workers_on_postgres_killed_at_random_finish_every_task_once",
    ) else {
        return;
    };
    let started = Instant::now();
    let repo = Repo::new(&[("README.md", "# scale-out\n")]);
    let ids = first.submit("scale-out", &workflow(), repo.path());
    assert_eq!(ids.len(), TASKS);

    // Two servers, each with its own home, sharing the database and the tokens (as a deployment
    // copies them), each with one embedded worker; the API is on a fixed port across restarts.
    let second = first.sibling();
    let mut servers = Vec::new();
    for (index, home) in [first, second].into_iter().enumerate() {
        if index == 1 {
            for file in ["token", "worker-token"] {
                let from = servers
                    .first()
                    .map(|m: &Member| m.home.path().join(file))
                    .expect("the first server started");
                std::fs::copy(&from, home.path().join(file)).expect("copy the server's tokens");
            }
        }
        let mut member = Member {
            name: format!("server-{}", index + 1),
            home,
            args: Vec::new(),
            env: Vec::new(),
            process: None,
        };
        member.args = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--lease",
            "3s",
            "--grace",
            "1s",
            "--rate-limit",
            "0",
        ]
        .map(str::to_owned)
        .to_vec();
        member.start();
        let addr = poll_until("serve.addr", SERVE_DEADLINE, || {
            Some(read_trimmed(&member.home.path().join("serve.addr"))).filter(|a| !a.is_empty())
        });
        member.args[2] = addr;
        servers.push(member);
    }
    let token = read_trimmed(&servers[0].home.path().join("worker-token"));
    let addresses: Vec<String> = servers
        .iter()
        .map(|s| format!("http://{}", s.args[2]))
        .collect();
    let mut members = servers;
    for n in 0..4 {
        let mut worker = Member {
            name: format!("worker-{}", n + 1),
            home: Home::new(),
            args: [
                "worker",
                "--server",
                &addresses[n % 2],
                "--name",
                &format!("remote{}", n + 1),
                "--slots",
                "2",
                "--lease",
                "3s",
                "--grace",
                "1s",
            ]
            .map(str::to_owned)
            .to_vec(),
            env: vec![("ORCH_WORKER_TOKEN".to_owned(), token.clone())],
            process: None,
        };
        worker.start();
        members.push(worker);
    }

    // Tasks not done yet; a task that can no longer finish by itself fails the test at once.
    let unfinished = |home: &Home| {
        let stuck = home.query_rows(
            "SELECT id, status, COALESCE(status_reason, '') FROM tasks \
             WHERE status IN ('failed', 'blocked', 'needs_review', 'cancelled') ORDER BY id LIMIT 5",
        );
        assert!(stuck.is_empty(), "tasks that cannot finish: {stuck:?}");
        home.query_int("SELECT COUNT(*) FROM tasks WHERE status <> 'done'")
    };
    let mut rng = rand::rng();
    let mut kills: BTreeMap<String, usize> = BTreeMap::new();
    let mut total_kills = 0;
    loop {
        std::thread::sleep(Duration::from_millis(rng.random_range(500..=3_000)));
        let victim = rng.random_range(0..members.len());
        members[victim].kill();
        members[victim].start();
        *kills.entry(members[victim].name.clone()).or_default() += 1;
        total_kills += 1;
        let left = unfinished(&members[0].home);
        if total_kills % 10 == 0 {
            eprintln!(
                "{total_kills} kills, {left} tasks not done yet, {:.0?} in",
                started.elapsed()
            );
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{left} tasks still not done after {total_kills} kills and {:.0?}",
            started.elapsed()
        );
        if total_kills >= KILLS {
            break;
        }
    }
    poll_until("every task to be done", SETTLE, || {
        (unfinished(&members[0].home) == 0).then_some(())
    });
    let wall = started.elapsed();
    for member in &mut members {
        if let Some(process) = member.process.take() {
            process.signal(Signal::SIGTERM);
            let finished = process.finish(SERVE_DEADLINE);
            finished.expect_code(0, &format!("{} after SIGTERM", member.name));
        }
    }

    let home = &members[0].home;
    let runs_succeeded = home.query_int("SELECT COUNT(*) FROM runs WHERE state = 'succeeded'");
    let completes = home.query_int("SELECT COUNT(*) FROM events WHERE kind = 'complete'");
    let done_events = home
        .query_int("SELECT COUNT(*) FROM events WHERE kind = 'complete' AND to_status = 'done'");
    let lost = home.query_int("SELECT COUNT(*) FROM runs WHERE state = 'lost'");
    let refused = home.query_int("SELECT COUNT(*) FROM events WHERE kind = 'refused'");
    assert_eq!(done_events, TASKS as i64, "one `done` per task");
    assert_eq!(
        completes, runs_succeeded,
        "exactly one `complete` event per run that succeeded"
    );
    assert_eq!(
        home.query_pairs(
            "SELECT run_id, COUNT(*) FROM events WHERE kind = 'complete' \
             GROUP BY run_id HAVING COUNT(*) > 1"
        ),
        vec![],
        "a run completed twice"
    );
    // A completion is accepted only from the run holding the lease: no `complete` event names
    // a run that was lost, cancelled or requeued (its token had gone stale).
    assert_eq!(
        home.query_int(
            "SELECT COUNT(*) FROM events e JOIN runs r ON r.id = e.run_id \
             WHERE e.kind = 'complete' AND r.state <> 'succeeded'"
        ),
        0,
        "a completion with a stale token was accepted"
    );
    assert_eq!(
        home.query_int("SELECT COUNT(*) FROM runs WHERE state = 'active'"),
        0
    );
    home.assert_consistent("after the chaos");
    eprintln!(
        "scale-out chaos: {TASKS} tasks done, {total_kills} kills {kills:?}, {runs_succeeded} \
         runs succeeded, {lost} lost, {refused} refused requests, wall time {wall:.1?}"
    );
    assert!(
        lost > 0,
        "no kill interrupted a run: the test did not test recovery"
    );
}
