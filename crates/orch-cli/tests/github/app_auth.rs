//! GitHub App auth through `orch serve`: orch signs a JWT with the App's key, gets an
//! installation token (pushes with it too), replaces it before it expires, and gets a new one
//! when the forge refuses the old.

use std::time::Duration;

use orch_github_fake::FakeGitHub;

use crate::outbound_world::{stop, Auth, World, REPO};
use crate::support::{poll_until, SERVE_DEADLINE};

const APP_ID: u64 = 4242;

fn done_with_pull(world: &World, issue: u64) -> u64 {
    let task = world.task_of(issue);
    world.wait_done(task);
    let pull = poll_until("its pull request", SERVE_DEADLINE, || {
        world.home.task(task)["forge"]["pr_number"].as_u64()
    });
    world.wait_outbox_drained();
    pull
}

#[test]
fn an_app_authenticates_pushes_and_refreshes_its_installation_token() {
    let fake = FakeGitHub::start_blocking();
    // Installation tokens live 6 s: the client replaces them half-way through.
    fake.register_app(
        APP_ID,
        orch_github_fake::TEST_APP_PUBLIC_KEY,
        Duration::from_secs(6),
    );
    let installation = fake.install_app(APP_ID, "octo", &[REPO]);
    let world = World::with(
        Auth::App {
            app_id: APP_ID,
            installation,
        },
        "",
        fake,
    );
    let serve = world.serve();
    let first = world.fake.create_issue(REPO, "First change", "", &["orch"]);
    let pull = done_with_pull(&world, first);
    let opened = world.fake.pull(REPO, pull).unwrap();
    // Pushed over git with the installation token: the branch is on the forge.
    assert_eq!(
        world.fake.branch_tip(REPO, &opened.head).as_deref(),
        Some(opened.head_sha.as_str())
    );
    let comments = world.bot_comments(first);
    assert_eq!(comments.len(), 1, "{comments:#?}");
    assert!(comments[0].author.ends_with("[bot]"), "{comments:#?}");
    let minted = world.fake.installation_tokens_issued();
    assert!(minted >= 1);

    // Past half the token's life a new one is made before use; and a token the forge refuses
    // is replaced at once.
    std::thread::sleep(Duration::from_secs(4));
    world.fake.expire_installation_tokens();
    let second = world
        .fake
        .create_issue(REPO, "Second change", "", &["orch"]);
    done_with_pull(&world, second);
    assert!(
        world.fake.installation_tokens_issued() > minted,
        "a fresh installation token"
    );
    assert_eq!(world.fake.pulls(REPO).len(), 2);
    assert_eq!(world.bot_comments(second).len(), 1);
    stop(serve);
}
