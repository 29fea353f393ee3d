//! Chaos: the daemon and remote workers SIGKILLed at random, again and again, over hundreds of
//! tasks whose steps each append one line to a file. Every `done` task's branch (one per task)
//! holds its line exactly once: a finished step is never lost (its checkpoint is on the
//! branch) and never applied twice (the next attempt skips it and discards the half-done one).
//!
//! Bounded: `ORCH_CHAOS_TASKS` (default 500) tasks and `ORCH_CHAOS_KILLS` (default 50) kills.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::remote::server_and_token;
use crate::support::{poll_until, read_json, Home, Process, Repo, SERVE_DEADLINE};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator: the seed is printed, so a failing run can be replayed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn remote_worker(home: &Home, server: &str, token: &str, name: &str) -> Process {
    home.spawn_with_env(
        &[
            "worker", "--server", server, "--name", name, "--slots", "3", "--lease", "2s",
            "--grace", "1s",
        ],
        &[("ORCH_WORKER_TOKEN", token)],
    )
}

#[test]
fn daemon_and_remote_workers_killed_at_random_leave_every_done_task_with_each_line_once() {
    let tasks = setting("ORCH_CHAOS_TASKS", 500);
    let kills_wanted = setting("ORCH_CHAOS_KILLS", 50);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    eprintln!("chaos: seed {seed}, {tasks} tasks, {kills_wanted} kills");
    let mut dice = Dice(seed);
    let started = Instant::now();

    let home = Home::new();
    let repo = Repo::new(&[("log.txt", "base\n")]);
    let mut yaml = "name: chaos\ndefaults:\n  retry: {max_attempts: 30, backoff: 0s, max_backoff: 0s, jitter: 0s}\ntasks:\n".to_owned();
    for n in 1..=tasks {
        yaml.push_str(&format!(
            "  - id: t{n}\n    title: Chaos {n}\n    steps:\n      - name: append\n        agent: sim\n        prompt: |\n          Append.\n          @append log.txt\n          task {n}\n          @end\n"
        ));
    }
    let ids = home.submit("chaos", &yaml, repo.path());
    let serve_args = ["--workers", "0", "--lease", "2s", "--grace", "1s"];
    let mut serve = home.serve(&serve_args);
    let (server, token) = server_and_token(&home);
    let address = server.trim_start_matches("http://").to_owned();
    let restart_daemon = || {
        let mut args = vec!["serve", "--listen", address.as_str()];
        args.extend_from_slice(&serve_args);
        home.spawn(&args)
    };
    let names = ["alpha", "beta", "gamma"];
    let worker_homes: Vec<Home> = names.iter().map(|_| Home::new()).collect();
    let mut workers: Vec<Process> = names
        .iter()
        .zip(&worker_homes)
        .map(|(name, h)| remote_worker(h, &server, &token, name))
        .collect();

    let done_count = || {
        home.query_int("SELECT COUNT(*) FROM tasks WHERE status IN ('done', 'failed', 'needs_review', 'cancelled')")
    };
    let mut kills = 0;
    let mut daemon_kills = 0;
    // Kill until enough kills have landed, then let the rest finish in peace.
    while kills < kills_wanted && (done_count() as usize) < tasks {
        std::thread::sleep(Duration::from_millis(200 + dice.below(600)));
        let victim = dice.below(names.len() as u64 + 1) as usize;
        if victim == names.len() {
            let _ = serve.kill();
            serve = restart_daemon();
            daemon_kills += 1;
        } else {
            // Killed (and reaped) before its successor starts: the successor locks the same
            // home, and a start that found the old one still holding it would exit at once.
            let old = workers.remove(victim);
            let _ = old.kill();
            workers.insert(
                victim,
                remote_worker(&worker_homes[victim], &server, &token, names[victim]),
            );
        }
        kills += 1;
    }
    let mut last_report = Instant::now();
    // Generous for a loaded machine; progress and the wall time are printed.
    poll_until("every task to end", SERVE_DEADLINE * 10, || {
        if last_report.elapsed() > Duration::from_secs(15) {
            last_report = Instant::now();
            eprintln!(
                "chaos: {} of {tasks} tasks ended after {:.0}s",
                done_count(),
                started.elapsed().as_secs_f64()
            );
        }
        ((done_count() as usize) >= tasks).then_some(())
    });
    let wall = started.elapsed();

    let statuses: BTreeMap<String, i64> = ["done", "failed", "needs_review", "cancelled"]
        .iter()
        .map(|s| {
            (
                (*s).to_owned(),
                home.query_int(&format!("SELECT COUNT(*) FROM tasks WHERE status = '{s}'")),
            )
        })
        .collect();
    let lost_runs = home.query_int("SELECT COUNT(*) FROM runs WHERE state = 'lost'");
    assert_eq!(home.tasks_completed_more_than_once(), vec![]);

    // One branch per task, and each done task's branch holds base + its line, once.
    let refs = repo.git(&[
        "for-each-ref",
        "--format=%(refname:short)",
        "refs/heads/orch/",
    ]);
    let mut branches: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for name in refs.lines() {
        let id: i64 = name
            .trim_start_matches("orch/")
            .split('-')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("a task branch: {name}"));
        branches.entry(id).or_default().push(name.to_owned());
    }
    let mut checked = 0;
    let mut bad = Vec::new();
    for (key, id) in &ids {
        let n: usize = key.trim_start_matches('t').parse().unwrap();
        let status = home.task_status(*id);
        let owned = branches.get(id).cloned().unwrap_or_default();
        assert!(
            owned.len() <= 1,
            "task {id} has {} branches: {owned:?}",
            owned.len()
        );
        if status != "done" {
            continue;
        }
        let branch = &owned[0];
        let log = repo.git(&["show", &format!("{branch}:log.txt")]);
        let expected = format!("base\ntask {n}");
        if log != expected {
            bad.push(format!("task {id} ({branch}):\n{log}"));
        }
        // The daemon's result names the commit holding the work, when its bundle arrived.
        let attempt = home.query_int(&format!(
            "SELECT MAX(attempt) FROM runs WHERE task_id = {id} AND state = 'succeeded'"
        ));
        let result_file = home.run_dir(*id, attempt as u32).join("result.json");
        if result_file.exists() {
            let result = read_json(&result_file);
            let tip = repo.git(&["rev-parse", branch]);
            assert_eq!(
                result["commit"].as_str(),
                Some(tip.as_str()),
                "task {id}: {result:#}"
            );
        }
        checked += 1;
    }
    eprintln!(
        "chaos: {kills} kills ({daemon_kills} of the daemon), {lost_runs} lost runs, statuses {statuses:?}, {checked} done tasks checked, wall time {:.1}s",
        wall.as_secs_f64()
    );
    assert!(
        bad.is_empty(),
        "{} done tasks without their line exactly once:\n{}",
        bad.len(),
        bad.join("\n")
    );
    assert!(
        kills >= kills_wanted,
        "only {kills} kills landed before every task ended"
    );
    assert!(
        checked * 10 >= tasks * 9,
        "most tasks end done: {statuses:?}"
    );

    for worker in workers {
        drop(worker.kill());
    }
    drop(serve.kill());
}
