//! The whole feedback scenario of `feedback.rs` under chaos: the real `orch serve` sends its own
//! forge writes (its outbox dispatcher, no sender in the test) while the test SIGKILLs and
//! restarts it at random moments (seeded; the seed is printed, `ORCH_CHAOS_SEED` replays one),
//! at least ten times across the scenario. The test acts as CI and reviewer on the fake: a
//! failing check, then a passing one; changes requested on a line; an approval. At the end the
//! fake holds exactly one pull request, one marker comment edited in place, no label change made
//! twice, one merge, the issue closed; the task is done and each cause started one follow-up.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::feedback::{
    approve_green, bundle_text, fail_unit_tests, request_changes_on_a_line, World, REPO,
};
use crate::support::{Process, SERVE_DEADLINE};

/// The fewest kills the scenario must see.
const KILLS: usize = 10;
/// How long any stage may take, kills included.
const STAGE_DEADLINE: Duration = Duration::from_secs(120);

/// The daemon, killed and restarted whenever its random moment has come.
struct Chaos<'w> {
    world: &'w World,
    serve: Option<Process>,
    rng: StdRng,
    next_kill: Instant,
    kills: usize,
}

impl<'w> Chaos<'w> {
    fn start(world: &'w World) -> Chaos<'w> {
        let seed = std::env::var("ORCH_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random::<u64>);
        println!("chaos seed: {seed} (replay with ORCH_CHAOS_SEED={seed})");
        eprintln!("chaos seed: {seed} (replay with ORCH_CHAOS_SEED={seed})");
        let mut chaos = Chaos {
            world,
            serve: Some(Self::serve(world)),
            rng: StdRng::seed_from_u64(seed),
            next_kill: Instant::now(),
            kills: 0,
        };
        chaos.schedule();
        chaos
    }

    fn serve(world: &World) -> Process {
        // A short lease: the run a killed daemon held is recovered soon after the restart.
        world.serve(&["--lease", "2s"])
    }

    fn schedule(&mut self) {
        self.next_kill =
            Instant::now() + Duration::from_millis(self.rng.random_range(1_000..=3_000));
    }

    /// SIGKILL and restart the daemon if its moment has come.
    fn tick(&mut self) {
        if Instant::now() < self.next_kill {
            return;
        }
        if let Some(serve) = self.serve.take() {
            serve.kill();
        }
        self.kills += 1;
        let _ = std::fs::remove_file(self.world.home.path().join("serve.addr"));
        self.serve = Some(Self::serve(self.world));
        self.schedule();
    }

    /// Poll `check` (and the chaos) until it answers and the daemon was killed `kills` times in
    /// all (so the kills are spread across the scenario's stages); no kill past `kills`.
    fn until<T>(
        &mut self,
        kills: usize,
        what: &str,
        mut check: impl FnMut(&World) -> Option<T>,
    ) -> T {
        let world = self.world;
        let deadline = Instant::now() + STAGE_DEADLINE;
        loop {
            // Kills stop once the stage has had its share: the work must be able to finish
            // between them however slow the machine is (each lost run spends an attempt).
            if self.kills < kills {
                self.tick();
            }
            if self.kills >= kills {
                if let Some(value) = check(world) {
                    return value;
                }
            }
            assert!(
                Instant::now() < deadline,
                "gave up after {STAGE_DEADLINE:?} ({} kills) waiting for {what}\nruns: {:?}\n\
                 tasks: {:?}\noutbox: {:?}",
                self.kills,
                world
                    .home
                    .query_rows("SELECT task_id, attempt, state, outcome FROM runs ORDER BY id"),
                world.home.query_rows("SELECT id, status FROM tasks"),
                world.home.query_rows(
                    "SELECT idempotency_key, state, attempts, COALESCE(last_error, '') \
                     FROM forge_outbox ORDER BY id"
                ),
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop killing; the daemon ends with SIGTERM.
    fn stop(mut self) {
        let serve = self.serve.take().unwrap();
        // Once it listens it handles SIGTERM (a daemon just restarted may not yet).
        self.world.home.serve_addr();
        serve.signal(nix::sys::signal::Signal::SIGTERM);
        serve
            .finish(SERVE_DEADLINE)
            .expect_code(0, "serve after SIGTERM");
    }
}

/// The pull request's head once the task is done and its last commit is pushed as the head.
fn settled_head(world: &World, task: i64, pull: u64) -> Option<String> {
    world.settled(task, pull)
}

/// The attempts of `task`'s runs that succeeded.
fn succeeded_attempts(world: &World, task: i64) -> Vec<u32> {
    world
        .home
        .query_rows(&format!(
            "SELECT attempt FROM runs WHERE task_id = {task} AND state = 'succeeded' ORDER BY attempt"
        ))
        .iter()
        .map(|row| row[0].parse().unwrap())
        .collect()
}

/// How many succeeded runs' bundles hold `needle`.
fn succeeded_holding(world: &World, task: i64, needle: &str) -> usize {
    succeeded_attempts(world, task)
        .into_iter()
        .filter(|attempt| bundle_text(&world.home, task, *attempt).contains(needle))
        .count()
}

#[test]
fn the_whole_scenario_survives_a_daemon_killed_at_random_moments() {
    let world =
        World::new("auto_merge = \"squash\"\nround_limit = 3\ndelete_branch_on_merge = true\n");
    let fake = &world.fake;
    let issue = fake.create_issue(
        REPO,
        "Write the release notes",
        "List what changed.",
        &["orch"],
    );
    let mut chaos = Chaos::start(&world);

    let (task, pull) = chaos.until(2, "the issue's task with its pull request", |w| {
        w.task_and_pull(issue)
    });
    let branch = fake.pull(REPO, pull).unwrap().head;
    let head = chaos.until(3, "the first run's push on the pull request", |w| {
        settled_head(w, task, pull)
    });

    // CI fails the head: one follow-up run whose prompt holds the failure.
    fail_unit_tests(fake, &head);
    chaos.until(5, "a succeeded follow-up run holding the failure", |w| {
        (succeeded_holding(w, task, "at src/lib.rs:41") > 0).then_some(())
    });
    let head = chaos.until(6, "the check follow-up pushed", |w| {
        settled_head(w, task, pull).filter(|h| *h != head)
    });

    // CI passes; the reviewer requests changes on a line.
    request_changes_on_a_line(fake, &head, pull);
    chaos.until(
        8,
        "a succeeded follow-up run holding the review comment",
        |w| (succeeded_holding(w, task, "NOTES.md:1") > 0).then_some(()),
    );
    let head = chaos.until(9, "the review follow-up pushed", |w| {
        settled_head(w, task, pull).filter(|h| *h != head)
    });

    // Green and approved: merged, the issue closed, the branch deleted, the worktree removed.
    approve_green(fake, &head, pull);
    chaos.until(KILLS, "the pull request merged and its issue closed", |w| {
        let merged = w.fake.pull(REPO, pull)?;
        let closed = w.fake.issue(REPO, issue)?;
        (merged.merged && closed.state == "closed" && w.fake.branch_tip(REPO, &branch).is_none())
            .then_some(())
    });
    // The outbox empties however often the daemon dies.
    chaos.until(KILLS, "the outbox sent", |w| {
        let left = w
            .home
            .query_rows("SELECT idempotency_key, state FROM forge_outbox WHERE state <> 'done'");
        assert!(
            left.iter().all(|row| row[1] != "failed"),
            "a forge write failed: {left:?}"
        );
        left.is_empty().then_some(())
    });
    let kills = chaos.kills;
    let worktree: PathBuf = crate::support::workspace_of(&world.home.run_dir(task, 1));
    chaos.until(KILLS, "the worktree removed and the outbox sent", |w| {
        let left = w
            .home
            .query_int("SELECT COUNT(*) FROM forge_outbox WHERE state <> 'done'");
        (left == 0 && !worktree.exists()).then_some(())
    });
    chaos.stop();
    eprintln!("kills: {kills}");
    assert!(kills >= KILLS, "only {kills} kills");

    // One pull request, merged once (squash).
    let pulls = fake.pulls(REPO);
    assert_eq!(pulls.len(), 1, "{pulls:#?}");
    assert!(pulls[0].merged);
    assert_eq!(pulls[0].merge_method.as_deref(), Some("squash"));
    let requests = fake.requests();
    let count = |route: &str| {
        requests
            .iter()
            .filter(|r| r.route == route && (200..300).contains(&r.status))
            .count()
    };
    assert_eq!(
        count("PUT /repos/{owner}/{repo}/pulls/{number}/merge"),
        1,
        "one merge"
    );
    assert_eq!(
        count("POST /repos/{owner}/{repo}/pulls"),
        1,
        "one pull request made"
    );
    assert_eq!(
        fake.issue(REPO, issue).unwrap().state,
        "closed",
        "the issue closed"
    );
    assert_eq!(world.home.task_status(task), "done");

    // One marker comment, edited in place, showing the end state.
    let markers: Vec<_> = fake
        .comments(REPO, issue)
        .into_iter()
        .filter(|c| c.body.contains("<!-- orch:task"))
        .collect();
    assert_eq!(markers.len(), 1, "one marker comment: {markers:#?}");
    assert!(!markers[0].edits.is_empty(), "edited in place");
    assert!(
        markers[0].body.contains("status: `done`") && markers[0].body.contains(&format!("#{pull}")),
        "{}",
        markers[0].body
    );
    assert_eq!(
        count("POST /repos/{owner}/{repo}/issues/{number}/comments"),
        1,
        "one comment created"
    );

    // No label change made twice: orch's label events alternate per label, and no transition
    // was enqueued twice in a row.
    let mut last: std::collections::BTreeMap<String, String> = Default::default();
    for delivery in fake.deliveries() {
        let action = delivery.payload["action"].as_str().unwrap_or_default();
        if delivery.event != "issues"
            || !matches!(action, "labeled" | "unlabeled")
            || delivery.payload["sender"]["login"] != "orch-bot"
        {
            continue;
        }
        let label = delivery.payload["label"]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        let previous = last.insert(label.clone(), action.to_owned());
        assert_ne!(previous.as_deref(), Some(action), "{label} {action} twice");
    }
    let changes = world.home.query_rows(&format!(
        "SELECT op FROM forge_outbox WHERE task_id = {task} AND op LIKE '%set_labels%' ORDER BY id"
    ));
    for pair in changes.windows(2) {
        assert_ne!(pair[0], pair[1], "a label change enqueued twice");
    }
    let mut labels = fake.issue_labels(REPO, issue);
    labels.sort();
    assert!(
        labels.contains(&"status:done".to_owned()),
        "ends status:done: {labels:?}"
    );
    assert_eq!(
        labels.iter().filter(|l| l.starts_with("status:")).count(),
        1,
        "one status label: {labels:?}"
    );

    // Each cause started one follow-up that succeeded; nothing else ran to success.
    assert_eq!(succeeded_holding(&world, task, "at src/lib.rs:41"), 1);
    assert_eq!(succeeded_holding(&world, task, "NOTES.md:1"), 1);
    assert_eq!(
        succeeded_attempts(&world, task).len(),
        3,
        "the first run and one follow-up per cause"
    );
}
