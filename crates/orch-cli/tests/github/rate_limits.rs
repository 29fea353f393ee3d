//! Rate limits end to end: while the fake answers every API request with a rate limit, orch's
//! writes wait for the reset (or `Retry-After`) instead of failing or hammering, and then all
//! arrive, once. Requests are counted at the fake.

use std::time::{Duration, SystemTime};

use crate::outbound_world::{stop, World, REPO};
use crate::support::{poll_until, SERVE_DEADLINE};

/// The fake's API requests (not git's), with their answers.
fn api_requests(world: &World) -> Vec<orch_github_fake::SeenRequest> {
    world
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/repos") || r.path.starts_with("/user"))
        .collect()
}

fn everything_sent(world: &World, issue: u64) {
    let task = world.task_of(issue);
    world.wait_done(task);
    poll_until("the pull request", SERVE_DEADLINE, || {
        world.fake.pulls(REPO).into_iter().next()
    });
    world.wait_outbox_drained();
    assert_eq!(world.fake.pulls(REPO).len(), 1);
    assert_eq!(world.bot_comments(issue).len(), 1);
    assert!(world
        .fake
        .issue_labels(REPO, issue)
        .contains(&"status:done".to_owned()));
}

#[test]
fn a_primary_rate_limit_is_waited_out_until_its_reset_without_hammering() {
    let world = World::new("");
    let serve = world.serve();
    let reset = SystemTime::now() + Duration::from_secs(4);
    world.fake.primary_rate_limit_until(reset);
    let issue = world
        .fake
        .create_issue(REPO, "Bump the version", "", &["orch"]);
    everything_sent(&world, issue);
    let requests = api_requests(&world);
    let limited: Vec<_> = requests.iter().filter(|r| r.status == 403).collect();
    assert!(!limited.is_empty(), "the limit was hit: {requests:#?}");
    // One refused request tells the client the reset; it waits instead of trying again and
    // again (a few may race in before the first answer).
    assert!(limited.len() <= 3, "hammered: {limited:#?}");
    // Nothing was done before the reset (the header's whole second).
    let reset_second = reset
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for request in requests.iter().filter(|r| r.status != 403) {
        let at = request
            .at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(at + 1 >= reset_second, "{request:?} before the reset");
    }
    stop(serve);
}

#[test]
fn a_secondary_rate_limit_waits_its_retry_after() {
    let world = World::new("");
    let serve = world.serve();
    world.fake.fail_secondary_rate_limit(2, Some(1));
    let issue = world.fake.create_issue(REPO, "Fix a typo", "", &["orch"]);
    everything_sent(&world, issue);
    let requests = api_requests(&world);
    // The first limited API request holds back every API request of the daemon (the writer
    // and the poller share the client) for `Retry-After`; the second fault may go to another
    // of the daemon's requests, or to the first one sent after the wait.
    let first = requests
        .iter()
        .find(|r| r.status == 403)
        .unwrap_or_else(|| panic!("no API request was limited: {requests:#?}"))
        .at;
    let during: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.at > first
                && r.at.duration_since(first).unwrap() < Duration::from_millis(900)
                && r.status != 403
        })
        .collect();
    assert!(
        during.is_empty(),
        "API requests inside the Retry-After: {during:#?}"
    );
    assert!(
        requests.iter().filter(|r| r.status == 403).count() <= 2,
        "{requests:#?}"
    );
    stop(serve);
}
