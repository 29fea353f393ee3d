//! Cron jobs (`orch job`) end to end, on a test-controlled calendar clock
//! (`ORCH_TEST_CLOCK_FILE`): two servers on one database with the leader killed across a slot
//! fire each slot exactly once; after downtime the catch-up policy fires once for the missed
//! slots and the skip policy fires none; `orch job list` shows the next firing in the job's
//! time zone; bad schedules are refused with the fix.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::{
    int, on_both_backends, poll_until, Finished, Home, Process, SharedDatabase, COMMAND_DEADLINE,
    SERVE_DEADLINE,
};

/// 2030-01-01 00:00:00 UTC: a minute boundary far from the real clock.
const BASE: i64 = 1_893_456_000_000;
const MINUTE: i64 = 60_000;

/// The calendar the commands see: the wall clock plus an offset kept in a file.
struct Clock {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

impl Clock {
    fn new() -> Clock {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clock");
        std::fs::write(&file, "0").unwrap();
        Clock { _dir: dir, file }
    }

    /// Make the calendar read `at` now (it runs on with the wall clock from there).
    fn set(&self, at: i64) {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let temp = self.file.with_extension("tmp");
        std::fs::write(&temp, (at - wall).to_string()).unwrap();
        std::fs::rename(&temp, &self.file).unwrap();
    }

    fn env(&self) -> [(&str, &str); 1] {
        [(
            "ORCH_TEST_CLOCK_FILE",
            self.file.to_str().expect("temp paths are UTF-8"),
        )]
    }

    fn run(&self, home: &Home, args: &[&str]) -> Finished {
        home.spawn_with_env(args, &self.env())
            .finish(COMMAND_DEADLINE)
    }

    fn json(&self, home: &Home, args: &[&str]) -> Value {
        let finished = self.run(home, args);
        finished.expect_code(0, &format!("orch {}", args.join(" ")));
        finished.json()
    }

    fn serve(&self, home: &Home) -> Process {
        home.spawn_with_env(
            &["serve", "--listen", "127.0.0.1:0", "--workers", "0"],
            &self.env(),
        )
    }
}

/// (slot, kind, task) of every firing, oldest slot first.
fn firings(home: &Home) -> Vec<(i64, String, i64)> {
    home.query_rows("SELECT slot_at, kind, COALESCE(task_id, 0) FROM job_firings ORDER BY slot_at")
        .into_iter()
        .map(|row| {
            (
                row[0].parse().unwrap(),
                row[1].clone(),
                row[2].parse().unwrap(),
            )
        })
        .collect()
}

fn wait_for_firings(home: &Home, count: usize) -> Vec<(i64, String, i64)> {
    poll_until(&format!("{count} firing(s)"), SERVE_DEADLINE, || {
        let found = firings(home);
        assert!(found.len() <= count, "more firings than slots: {found:?}");
        (found.len() == count).then_some(found)
    })
}

/// A request to the daemon at `addr`: the status and the JSON body (`null` if none).
fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(COMMAND_DEADLINE)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn instance(home: &Home) -> String {
    poll_until("the instance id", SERVE_DEADLINE, || {
        std::fs::read_to_string(home.path().join("instance-id"))
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    })
}

fn add_every_minute(clock: &Clock, home: &Home, missed: &str) {
    clock.json(
        home,
        &[
            "job",
            "add",
            "every-minute",
            "--schedule",
            "* * * * *",
            "--missed",
            missed,
            "cron task",
            "--exec",
            "true",
            "--json",
        ],
    );
}

fn two_servers_fire_each_slot_once_across_a_killed_leader(database: SharedDatabase) {
    let a = Home::on(&database);
    let b = Home::on(&database);
    let clock = Clock::new();
    clock.set(BASE + 10_000);
    add_every_minute(&clock, &a, "skip");

    // A leads; B follows.
    let mut server_a = clock.serve(&a);
    let a_id = instance(&a);
    poll_until("A holds the scheduler lease", SERVE_DEADLINE, || {
        let holder = a.query_rows("SELECT holder FROM leases WHERE name = 'scheduler'");
        (holder.first().map(|r| r[0].as_str()) == Some(a_id.as_str())).then_some(())
    });
    let server_b = clock.serve(&b);
    let b_id = instance(&b);
    b.serve_addr();

    clock.set(BASE + MINUTE + 500);
    wait_for_firings(&a, 1);

    // The leader dies; the next slot passes while B has yet to take the lease over.
    server_a.kill();
    clock.set(BASE + 2 * MINUTE + 500);
    let found = wait_for_firings(&a, 2);
    let second = found[1].2;
    let creator = a.query_text(&format!(
        "SELECT actor FROM events WHERE task_id = {second} AND kind = 'create'"
    ));
    assert_eq!(creator, format!("cron-{b_id}"), "B fired the slot A missed");

    // A comes back as a follower; the next slot still fires once.
    server_a = clock.serve(&a);
    clock.set(BASE + 3 * MINUTE + 500);
    let found = wait_for_firings(&a, 3);
    let slots: Vec<i64> = found.iter().map(|f| f.0).collect();
    assert_eq!(slots, [BASE + MINUTE, BASE + 2 * MINUTE, BASE + 3 * MINUTE]);
    assert!(found.iter().all(|f| f.1 == "scheduled"), "{found:?}");
    let mut tasks: Vec<i64> = found.iter().map(|f| f.2).collect();
    tasks.sort_unstable();
    tasks.dedup();
    assert_eq!(tasks.len(), 3, "one task per slot: {found:?}");
    assert_eq!(
        a.query_int("SELECT COUNT(*) FROM tasks"),
        3,
        "no task without its firing"
    );
    // The next tick of both servers adds nothing for the slots already fired.
    let listed = clock.json(&b, &["job", "tick", "--json"]);
    assert_eq!(listed["fired"], Value::Array(Vec::new()), "{listed}");
    server_a.kill();
    server_b.kill();
    a.assert_consistent("after the cron run");
}

fn catch_up_fires_once_for_the_slots_missed_while_no_daemon_ran(home: Home) {
    let clock = Clock::new();
    clock.set(BASE + 10_000);
    add_every_minute(&clock, &home, "catch-up");
    // Ten minutes pass with no daemon; then one starts.
    clock.set(BASE + 10 * MINUTE + 500);
    let server = clock.serve(&home);
    let found = wait_for_firings(&home, 2);
    assert_eq!(
        found
            .iter()
            .map(|f| (f.0, f.1.as_str()))
            .collect::<Vec<_>>(),
        [
            (BASE + 9 * MINUTE, "catch_up"),
            (BASE + 10 * MINUTE, "scheduled")
        ],
        "one catch-up for the nine missed slots, then the current slot"
    );
    assert_eq!(home.query_int("SELECT COUNT(*) FROM tasks"), 2);
    let listed = clock.json(&home, &["job", "list", "--json"]);
    assert_eq!(listed[0]["last_slot"], BASE + 10 * MINUTE);
    assert_eq!(listed[0]["last_firing"]["kind"], "scheduled");
    // The API lists the job and fires it by hand; without the token it answers 401.
    let addr = home.serve_addr();
    let token = std::fs::read_to_string(home.path().join("token")).unwrap();
    let (status, jobs) = http(&addr, "GET", "/v1/jobs", Some(token.trim()));
    assert_eq!(status, 200, "{jobs}");
    assert_eq!(jobs[0]["name"], "every-minute");
    assert_eq!(jobs[0]["missed"], "catch-up");
    assert!(jobs[0]["next_at"].as_i64().unwrap() > BASE + 10 * MINUTE);
    let (status, fired) = http(
        &addr,
        "POST",
        "/v1/jobs/every-minute/run",
        Some(token.trim()),
    );
    assert_eq!(status, 200, "{fired}");
    assert_eq!(fired["kind"], "manual");
    assert_eq!(home.query_int("SELECT COUNT(*) FROM tasks"), 3);
    let (status, _) = http(&addr, "GET", "/v1/jobs", None);
    assert_eq!(status, 401);
    server.kill();
}

fn skip_fires_none_of_the_missed_slots(home: Home) {
    let clock = Clock::new();
    clock.set(BASE + 10_000);
    add_every_minute(&clock, &home, "skip");
    clock.set(BASE + 10 * MINUTE + 500);
    // One pass by hand, no daemon.
    let tick = clock.json(&home, &["job", "tick", "--json"]);
    let fired = tick["fired"].as_array().unwrap();
    assert_eq!(fired.len(), 1, "{tick}");
    assert_eq!(fired[0]["slot"], BASE + 10 * MINUTE);
    assert_eq!(fired[0]["kind"], "scheduled");
    assert_eq!(tick["skipped"], serde_json::json!(["every-minute"]));
    let task = int(&fired[0], "task");
    assert_eq!(home.task_status(task), "queued");
    // A second pass in the same minute fires nothing.
    let again = clock.json(&home, &["job", "tick", "--json"]);
    assert_eq!(again["fired"], Value::Array(Vec::new()));
    // A job disabled over the next slots and enabled again does not count them as missed.
    clock.json(&home, &["job", "disable", "every-minute", "--json"]);
    clock.set(BASE + 20 * MINUTE + 30_000);
    let none = clock.json(&home, &["job", "tick", "--json"]);
    assert_eq!(none["fired"], Value::Array(Vec::new()));
    clock.json(&home, &["job", "enable", "every-minute", "--json"]);
    clock.set(BASE + 21 * MINUTE + 500);
    let tick = clock.json(&home, &["job", "tick", "--json"]);
    assert_eq!(tick["fired"][0]["slot"], BASE + 21 * MINUTE);
    assert_eq!(tick["skipped"], Value::Array(Vec::new()));
    // By hand: fires now whatever the schedule.
    let manual = clock.json(&home, &["job", "run", "every-minute", "--json"]);
    assert_eq!(manual["kind"], "manual");
    assert_eq!(home.query_int("SELECT COUNT(*) FROM tasks"), 3);
}

fn the_list_shows_the_next_firing_in_the_jobs_time_zone(home: Home) {
    let clock = Clock::new();
    // 2030-01-15 12:00 UTC, a Tuesday.
    clock.set(1_894_708_800_000);
    clock.json(
        &home,
        &[
            "job",
            "add",
            "tokyo",
            "-s",
            "0 9 * * *",
            "--tz",
            "Asia/Tokyo",
            "morning",
            "--exec",
            "true",
            "--json",
        ],
    );
    clock.json(
        &home,
        &[
            "job",
            "add",
            "new-york",
            "-s",
            "30 8 * * MON-FRI",
            "--tz",
            "America/New_York",
            "standup",
            "--agent",
            "sim",
            "--json",
        ],
    );
    let listed = clock.json(&home, &["job", "list", "--json"]);
    let by_name = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == name)
            .unwrap()
            .clone()
    };
    let tokyo = by_name("tokyo");
    assert_eq!(tokyo["next_local"], "2030-01-16 09:00:00 JST");
    assert_eq!(tokyo["next_at"], 1_894_752_000_000_i64);
    let new_york = by_name("new-york");
    assert_eq!(new_york["next_local"], "2030-01-15 08:30:00 EST");
    assert_eq!(new_york["next_at"], 1_894_714_200_000_i64);
    let table = clock.run(&home, &["job", "list"]);
    table.expect_code(0, "orch job list");
    assert!(
        table.stdout.contains("2030-01-16 09:00:00 JST"),
        "{}",
        table.stdout
    );
    // Disabled: no next firing.
    clock.json(&home, &["job", "disable", "tokyo", "--json"]);
    let listed = clock.json(&home, &["job", "list", "--json"]);
    assert_eq!(listed[1]["name"], "tokyo");
    assert_eq!(listed[1]["next_at"], Value::Null);
    clock
        .run(&home, &["job", "remove", "tokyo"])
        .expect_code(0, "remove");
    assert_eq!(
        clock
            .json(&home, &["job", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

fn bad_jobs_are_refused_with_what_to_do(home: Home) {
    let clock = Clock::new();
    let cases: [(&[&str], &str); 5] = [
        (&["job", "add", "x", "-s", "* * *", "t"], "five"),
        (
            &[
                "job",
                "add",
                "x",
                "-s",
                "* * * * *",
                "--tz",
                "Mars/Base",
                "t",
            ],
            "IANA",
        ),
        (
            &["job", "add", "x", "-s", "* * * * *", "--missed", "all", "t"],
            "catch-up",
        ),
        (&["job", "add", "../x", "-s", "* * * * *", "t"], "job name"),
        (
            &[
                "job",
                "add",
                "x",
                "-s",
                "* * * * *",
                "t",
                "--agent",
                "nobody",
            ],
            "nobody",
        ),
    ];
    for (args, message) in cases {
        let finished = clock.run(&home, args);
        finished.expect_code(2, &args.join(" "));
        assert!(
            finished.stderr.contains(message),
            "{args:?}: {}",
            finished.stderr
        );
    }
    clock.json(&home, &["job", "add", "x", "-s", "@hourly", "t", "--json"]);
    let twice = clock.run(&home, &["job", "add", "x", "-s", "@hourly", "t"]);
    twice.expect_code(2, "a second job named x");
    assert!(
        twice.stderr.contains("orch job remove x"),
        "{}",
        twice.stderr
    );
    let missing = clock.run(&home, &["job", "run", "nope"]);
    missing.expect_code(2, "an unknown job");
    assert!(
        missing.stderr.contains("orch job list"),
        "{}",
        missing.stderr
    );
    assert_eq!(home.query_int("SELECT COUNT(*) FROM tasks"), 0);
}

on_both_backends!(shared: two_servers_fire_each_slot_once_across_a_killed_leader);
on_both_backends!(
    catch_up_fires_once_for_the_slots_missed_while_no_daemon_ran,
    skip_fires_none_of_the_missed_slots,
    the_list_shows_the_next_firing_in_the_jobs_time_zone,
    bad_jobs_are_refused_with_what_to_do,
);
