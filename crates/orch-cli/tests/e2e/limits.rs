//! Claim-time limits end to end: concurrency limits held by two servers and four remote workers
//! on one PostgreSQL database (sampled throughout), a daily cost limit that keeps the next task
//! queued with the reason until the test clock passes midnight, and `orch usage`.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{poll_until, Home, Repo, SERVE_DEADLINE};

fn read_trimmed(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .unwrap_or_default()
}

/// `sim` tasks that think for a while, and `deploy` tasks that run an exec step for a while.
fn workflow(sim_tasks: usize, deploy_tasks: usize) -> String {
    let mut yaml = "name: limits\ndefaults:\n  retry: {max_attempts: 3, backoff: 0s, max_backoff: 0s, jitter: 0s}\ntasks:\n".to_owned();
    for n in 1..=sim_tasks {
        yaml.push_str(&format!(
            "  - id: s{n}\n    title: Think {n}\n    steps:\n      - name: think\n        agent: sim\n        prompt: |\n          Think.\n          @sleep 700\n          @write note-{n}.txt\n          note {n}\n          @end\n"
        ));
    }
    for n in 1..=deploy_tasks {
        yaml.push_str(&format!(
            "  - id: d{n}\n    title: Deploy {n}\n    labels: [deploy]\n    steps:\n      - name: ship\n        exec:\n          - argv: [sleep, \"0.7\"]\n"
        ));
    }
    yaml
}

#[test]
fn concurrency_limits_hold_with_two_servers_and_four_workers_on_postgres() {
    let Some(first) = Home::with_backend(
        crate::support::Backend::Postgres,
        "concurrency_limits_hold_with_two_servers_and_four_workers_on_postgres",
    ) else {
        return;
    };
    let second = first.sibling();
    let config = "[concurrency]\nagents = { sim = 2 }\nlabels = { deploy = 1 }\n";
    first.write("config.toml", config);
    second.write("config.toml", config);
    let repo = Repo::new(&[("README.md", "# limits\n")]);
    let ids = first.submit("limits", &workflow(8, 4), repo.path());
    assert_eq!(ids.len(), 12);

    let serve_args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--lease",
        "10s",
        "--grace",
        "1s",
        "--rate-limit",
        "0",
    ];
    let server_one = first.spawn(&serve_args);
    let addr_one = first.serve_addr();
    std::fs::copy(
        first.path().join("worker-token"),
        second.path().join("worker-token"),
    )
    .expect("share the worker token");
    std::fs::copy(first.path().join("token"), second.path().join("token"))
        .expect("share the admin token");
    let server_two = second.spawn(&serve_args);
    let addr_two = second.serve_addr();
    let token = read_trimmed(&first.path().join("worker-token"));
    let mut workers = Vec::new();
    let worker_homes: Vec<Home> = (0..4).map(|_| Home::new()).collect();
    for (n, home) in worker_homes.iter().enumerate() {
        let server = if n % 2 == 0 { &addr_one } else { &addr_two };
        workers.push(home.spawn_with_env(
            &[
                "worker",
                "--server",
                &format!("http://{server}"),
                "--name",
                &format!("remote{n}"),
                "--slots",
                "2",
                "--lease",
                "10s",
                "--grace",
                "1s",
            ],
            &[("ORCH_WORKER_TOKEN", &token)],
        ));
    }

    // Sample what runs until every task is done: never more than the limits.
    let started = Instant::now();
    let (mut most_sim, mut most_deploy) = (0, 0);
    let mut reasons = std::collections::BTreeSet::new();
    loop {
        let rows = first.query_rows(
            "SELECT \
               COUNT(*) FILTER (WHERE status = 'running' AND spec LIKE '%\"agent\":\"sim\"%'), \
               COUNT(*) FILTER (WHERE status = 'running' AND spec LIKE '%\"deploy\"%'), \
               COUNT(*) FILTER (WHERE status <> 'done'), \
               string_agg(DISTINCT status_reason, ' | ') FILTER (WHERE status = 'queued') \
             FROM tasks",
        );
        let sim: i64 = rows[0][0].parse().unwrap();
        let deploy: i64 = rows[0][1].parse().unwrap();
        let left: i64 = rows[0][2].parse().unwrap();
        if !rows[0][3].is_empty() {
            reasons.insert(rows[0][3].clone());
        }
        assert!(sim <= 2, "{sim} sim tasks ran at once; the limit is 2");
        assert!(
            deploy <= 1,
            "{deploy} deploy tasks ran at once; the limit is 1"
        );
        most_sim = most_sim.max(sim);
        most_deploy = most_deploy.max(deploy);
        if left == 0 {
            break;
        }
        let stuck = first.query_rows(
            "SELECT id, status, COALESCE(status_reason, '') FROM tasks \
             WHERE status IN ('failed', 'needs_review', 'cancelled', 'blocked')",
        );
        if let Some(row) = stuck.first() {
            let task = first.task(row[0].parse().unwrap());
            panic!("tasks that cannot finish: {stuck:?}\n{:#}", task["events"]);
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{left} tasks still not done after {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(40));
    }
    // Ten slots for twelve tasks: the limits, not the slots, held them back.
    assert_eq!(most_sim, 2, "sim tasks never ran two at once");
    assert_eq!(most_deploy, 1);
    let reasons: Vec<String> = reasons.into_iter().collect();
    let joined = reasons.join("\n");
    assert!(
        joined.contains("waiting for: agent `sim` concurrency limit 2/2 running")
            || joined.contains("waiting for: label `deploy` concurrency limit 1/1 running"),
        "no waiting task showed why: {joined}"
    );
    for worker in workers {
        worker.signal(Signal::SIGTERM);
        worker
            .finish(SERVE_DEADLINE)
            .expect_code(0, "a remote worker after SIGTERM");
    }
    server_one.signal(Signal::SIGTERM);
    server_two.signal(Signal::SIGTERM);
    server_one
        .finish(SERVE_DEADLINE)
        .expect_code(0, "server one after SIGTERM");
    server_two
        .finish(SERVE_DEADLINE)
        .expect_code(0, "server two after SIGTERM");
    first.assert_consistent("after the limited run");
}

/// Milliseconds since the Unix epoch, now.
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn a_daily_cost_limit_keeps_the_next_task_queued_until_the_test_clock_passes_midnight() {
    let home = Home::new();
    home.write(
        "config.toml",
        "[budgets]\ntime_zone = \"UTC\"\n[budgets.agents.sim]\ncost_usd = 1.0\n",
    );
    // The calendar stands at 23:50 UTC of today: mid-evening, ten minutes before the reset.
    const DAY: i64 = 86_400_000;
    let now = wall_ms();
    let evening = now - now.rem_euclid(DAY) + DAY - 10 * 60_000;
    let clock = home.write("clock-offset", &(evening - now).to_string());
    let clock_env = clock.to_str().unwrap().to_owned();
    let repo = Repo::new(&[("README.md", "# budget\n")]);
    let spend = "name: spend\ntasks:\n  - id: spend\n    title: Spend a dollar fifty\n    steps:\n      - name: pay\n        agent: sim\n        prompt: |\n          Pay.\n          @cost 1.5\n          @write paid.txt\n          paid\n          @end\n";
    let first = home.submit("spend", spend, repo.path())["spend"];
    let server = home.spawn_with_env(
        &["serve", "--listen", "127.0.0.1:0", "--workers", "1"],
        &[("ORCH_TEST_CLOCK_FILE", &clock_env)],
    );
    poll_until("the first task to be done", SERVE_DEADLINE, || {
        (home.task_status(first) == "done").then_some(())
    });
    let next = "name: next\ntasks:\n  - id: next\n    title: The next one\n    steps:\n      - name: work\n        agent: sim\n        prompt: |\n          Work.\n          @write next.txt\n          next\n          @end\n";
    let second = home.submit("next", next, repo.path())["next"];
    let reason = poll_until("the next task to show why it waits", SERVE_DEADLINE, || {
        let task = home.task(second)["task"].clone();
        task["status_reason"]
            .as_str()
            .filter(|r| r.starts_with("waiting for:"))
            .map(|r| {
                (
                    task["status"].as_str().unwrap_or_default().to_owned(),
                    r.to_owned(),
                )
            })
    });
    assert_eq!(reason.0, "queued");
    assert!(
        reason
            .1
            .starts_with("waiting for: agent `sim` daily cost limit $1.50/$1.00 spent on "),
        "{}",
        reason.1
    );
    // `orch usage` shows the spend against the limit.
    let usage = home.json(&["usage", "--json"]);
    let sim = usage["today"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "sim")
        .cloned()
        .unwrap_or_else(|| panic!("no sim in {usage}"));
    assert_eq!(sim["spent"]["cost_usd"], 1.5);
    assert_eq!(sim["limit"]["cost_usd"], 1.0);
    let table = home.run(&["usage"]);
    table.expect_code(0, "orch usage");
    assert!(table.stdout.contains("$1.50/$1.00"), "{}", table.stdout);
    // Still waiting a while later: nothing but the calendar can free it.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(home.task_status(second), "queued");
    // Past midnight, the day's budget is new: the task runs.
    std::fs::write(&clock, (evening - now + 11 * 60_000).to_string()).unwrap();
    poll_until(
        "the next task to run after midnight",
        SERVE_DEADLINE,
        || (home.task_status(second) == "done").then_some(()),
    );
    let done_reason = home.task(second)["task"]["status_reason"].clone();
    assert!(
        !done_reason
            .as_str()
            .unwrap_or("")
            .starts_with("waiting for:"),
        "{done_reason}"
    );
    server.signal(Signal::SIGTERM);
    server
        .finish(SERVE_DEADLINE)
        .expect_code(0, "orch serve after SIGTERM");
    // Without a daemon, `orch usage` reads the store with the home's limits itself; the real
    // calendar is still the day the first task spent its dollar fifty on.
    let offline = home.json(&["usage", "--json", "--days", "2"]);
    assert_eq!(
        offline["today"]["agents"][0]["limit"]["cost_usd"], 1.0,
        "{offline:#}"
    );
    assert_eq!(offline["days"][0]["cost_usd"], 1.5, "{offline:#}");
}

#[test]
fn a_task_budget_stops_the_agent_mid_session_and_sends_the_task_to_review() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# budget\n")]);
    // Fifty cents: the second `@cost` passes it, so `late.txt` is never written.
    let yaml = "name: budget\ntasks:\n  - id: t\n    title: Spend too much\n    budget: {cost_usd: 0.5}\n    retry: {max_attempts: 3, backoff: 0s, max_backoff: 0s, jitter: 0s}\n    steps:\n      - name: work\n        agent: sim\n        prompt: |\n          Spend.\n          @cost 0.3\n          @write early.txt\n          early\n          @end\n          @cost 0.3\n          @sleep 5000\n          @write late.txt\n          late\n          @end\n";
    let id = home.submit("budget", yaml, repo.path())["t"];
    let started = Instant::now();
    home.serve_until_idle(1);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the session was not stopped"
    );
    let task = home.task(id);
    assert_eq!(task["task"]["status"], "needs_review", "{task:#}");
    assert_eq!(task["runs"].as_array().unwrap().len(), 1, "not retried");
    let reason = task["task"]["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("the task's budget of $0.50 was passed ($0.60 spent)"),
        "{reason}"
    );
    let run = home.run_dir(id, 1);
    let step = crate::support::read_json(&run.join("steps/work/result.json"));
    assert_eq!(step["failure_class"], "budget_exceeded", "{step:#}");
    let workspace = crate::support::workspace_of(&run);
    assert!(workspace.join("early.txt").is_file());
    assert!(!workspace.join("late.txt").exists(), "the session went on");
    // What the stopped session spent is recorded.
    let spent = task["usage"]["total"]["cost_usd"].as_f64().unwrap();
    assert!((spent - 0.6).abs() < 1e-9, "{spent}");
}

#[test]
fn a_task_budget_stops_a_real_claude_session_mid_stream() {
    use orch_modelsim::clienv::Settings;
    use orch_modelsim::Script;

    use crate::real_agents::{available, Model};

    if !available("claude") {
        return;
    }
    let script = Script::from_yaml(
        "conversations:\n  - turns:\n      - write: {path: first.txt, content: \"first\\n\"}\n      - write: {path: second.txt, content: \"second\\n\"}\n      - write: {path: third.txt, content: \"third\\n\"}\n      - write: {path: fourth.txt, content: \"fourth\\n\"}\n      - say: {text: \"All written\"}\n",
    )
    .unwrap();
    let model = Model::start("claude", script, Settings::no_retries());
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    std::fs::write(repo.path().join(".orch.toml"), model.config("claude", "")).unwrap();
    repo.git(&["add", ".orch.toml"]);
    repo.git(&["commit", "-qm", "orch config"]);
    // Each model turn costs hundreds of input tokens (the whole conversation so far): the
    // budget is passed by the second turn at the latest.
    let yaml = "tasks:\n  - id: t\n    title: real claude on a budget\n    budget: {tokens: 200}\n    retry: {max_attempts: 2, backoff: 10ms, max_backoff: 10ms}\n    steps:\n      - name: work\n        agent: claude\n        prompt: \"orch-e2e-first: write the files\"\n";
    let id = home.submit("budget", yaml, repo.path())["t"];
    let env: Vec<(&str, &str)> = model
        .env
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let served = home
        .spawn_with_env(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--workers",
                "1",
                "--lease",
                "5s",
                "--grace",
                "1s",
                "--exit-when-idle",
            ],
            &env,
        )
        .finish(SERVE_DEADLINE * 2);
    served.expect_code(0, "orch serve --exit-when-idle");
    let task = home.task(id);
    assert_eq!(
        task["task"]["status"], "needs_review",
        "{task:#}\n{}",
        served.stderr
    );
    assert_eq!(task["runs"].as_array().unwrap().len(), 1, "not retried");
    let run = home.run_dir(id, 1);
    let step = crate::support::read_json(&run.join("steps/work/result.json"));
    assert_eq!(step["failure_class"], "budget_exceeded", "{step:#}");
    let reason = task["task"]["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("the task's budget of 200 tokens was passed"),
        "{reason}"
    );
    // Stopped mid-stream: the later scripted turns never ran.
    let workspace = crate::support::workspace_of(&run);
    for late in ["third.txt", "fourth.txt"] {
        assert!(
            !workspace.join(late).exists(),
            "{late} was written: the session went on"
        );
    }
    let events = crate::support::read_text(&run.join("steps/work/events.jsonl"));
    assert!(
        !events.contains("All written"),
        "the session reached its final answer"
    );
}

#[test]
fn task_add_budget_flags_stop_the_agent_and_go_through_the_api() {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# budget flags\n")]);
    let project = repo.path().to_str().unwrap().to_owned();
    let body = "Spend.\n@cost 0.3\n@write early.txt\nearly\n@end\n@cost 0.3\n@sleep 5000\n@write late.txt\nlate\n@end\n";
    let added = home.json(&[
        "task",
        "add",
        "Spend too much",
        "--agent",
        "sim",
        "--body",
        body,
        "--budget-usd",
        "0.5",
        "--max-attempts",
        "3",
        "--project",
        &project,
        "--json",
    ]);
    assert_eq!(added["budget"]["cost_usd"], 0.5, "{added:#}");
    let id = crate::support::int(&added, "id");
    // A negative amount is refused with what to write instead.
    let wrong = home.run(&["task", "add", "x", "--budget-usd=-1", "--project", &project]);
    wrong.expect_code(2, "a negative budget");
    assert!(
        wrong.stderr.contains("--budget-usd") && wrong.stderr.contains("dollars >= 0"),
        "{}",
        wrong.stderr
    );

    home.serve_until_idle(1);
    let task = home.task(id);
    assert_eq!(task["task"]["status"], "needs_review", "{task:#}");
    let reason = task["task"]["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("the task's budget of $0.50 was passed"),
        "{reason}"
    );
    let workspace = crate::support::workspace_of(&home.run_dir(id, 1));
    assert!(!workspace.join("late.txt").exists(), "the session went on");

    // Through the API (`--server`), the budget reaches the daemon's store as given.
    let serve = home.serve(&["--workers", "0"]);
    let server = format!("http://{}", home.serve_addr());
    let remote = home.json(&[
        "task",
        "add",
        "On a token budget",
        "--agent",
        "sim",
        "--budget-tokens",
        "1000",
        "--budget-usd",
        "2.5",
        "--project",
        &project,
        "--server",
        &server,
        "--json",
    ]);
    assert_eq!(remote["budget"]["tokens"], 1000, "{remote:#}");
    assert_eq!(remote["budget"]["cost_usd"], 2.5, "{remote:#}");
    let stored = home.task(crate::support::int(&remote, "id"));
    assert_eq!(stored["task"]["budget"]["tokens"], 1000, "{stored:#}");
    serve.kill();
}
