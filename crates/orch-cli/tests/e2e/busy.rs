//! A busy daemon (issue 11, item 12): eight scripts adding tasks through one daemon whose rate
//! limit refuses most of their calls with 429 all succeed, because the CLI waits out
//! `Retry-After` instead of failing.

use crate::support::{poll_until, Home, COMMAND_DEADLINE, SERVE_DEADLINE};

#[test]
fn eight_scripts_adding_tasks_through_a_rate_limited_daemon_all_succeed() {
    let home = Home::new();
    let daemon = home.serve(&["--workers", "0", "--rate-limit", "20", "--rate-burst", "1"]);
    let addr = poll_until("serve.addr", SERVE_DEADLINE, || {
        std::fs::read_to_string(home.path().join("serve.addr")).ok()
    });
    let server = format!("http://{}", addr.trim());
    let results: Vec<(i32, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|script| {
                let (home, server) = (&home, &server);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for n in 0..3 {
                        let title = format!("script {script} task {n}");
                        let done = home
                            .spawn(&["task", "add", &title, "--server", server, "--json"])
                            .finish(COMMAND_DEADLINE * 3);
                        out.push((done.code.unwrap_or(-1), done.stderr));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a script thread"))
            .collect()
    });
    for (code, stderr) in &results {
        assert_eq!(*code, 0, "a script's `orch task add` failed: {stderr}");
    }
    assert_eq!(home.status_counts().0, 24);
    let via_api =
        home.query_int("SELECT COUNT(*) FROM events WHERE kind = 'create' AND actor <> 'cli'");
    assert_eq!(via_api, 24, "every task went through the daemon");
    drop(daemon);
}
