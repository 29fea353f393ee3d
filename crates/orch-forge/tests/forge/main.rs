//! The forge client against the fake GitHub: every operation, conditional requests, rate limits,
//! retries and timeouts, and GitHub App authentication. One test binary (linking is slow).

mod app;
mod operations;
mod resilience;

use std::time::Duration;

use orch_forge::{Forge, ForgeAuth, ForgeConfig, RepoRef, RetryPolicy, SecretString};
use orch_github_fake::FakeGitHub;

pub const REPO: &str = "octo/hello";

/// Short waits so the tests stay fast; the behaviour is the production one.
pub fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
        max_rate_limit_wait: Duration::from_secs(10),
        secondary_rate_limit_wait: Duration::from_millis(200),
        token_refresh_margin: Duration::from_secs(300),
    }
}

pub fn client(fake: &FakeGitHub, auth: ForgeAuth, policy: RetryPolicy) -> Forge {
    let config = ForgeConfig::github(auth)
        .with_api_base(&fake.url())
        .expect("the fake's URL parses")
        .with_policy(policy);
    Forge::github(config).expect("the client builds")
}

/// A fake with `octo/hello` and a client acting as `orch-bot` with a token.
pub async fn setup() -> (FakeGitHub, Forge, RepoRef) {
    setup_with(fast_policy()).await
}

pub async fn setup_with(policy: RetryPolicy) -> (FakeGitHub, Forge, RepoRef) {
    let fake = FakeGitHub::start().await;
    fake.create_repo(REPO);
    let token = fake.add_token("orch-bot");
    let forge = client(&fake, ForgeAuth::Token(SecretString::from(token)), policy);
    (fake, forge, RepoRef::parse(REPO).expect("a valid name"))
}
