//! GitHub App authentication against the fake: the JWT it verifies, installation tokens, their
//! refresh; and tokens read from files and the environment.

use std::time::Duration;

use orch_forge::{AppCredentials, ForgeAuth, ForgeError, RepoRef, SecretString};
use orch_github_fake::{FakeGitHub, OTHER_PRIVATE_KEY, TEST_APP_PRIVATE_KEY, TEST_APP_PUBLIC_KEY};

use crate::{client, fast_policy, REPO};

const APP_ID: u64 = 4242;

fn app_auth(key: &str, installation_id: Option<u64>) -> ForgeAuth {
    ForgeAuth::App(AppCredentials {
        app_id: APP_ID,
        private_key_pem: SecretString::from(key.to_owned()),
        installation_id,
    })
}

async fn app_setup(token_lifetime: Duration) -> (FakeGitHub, u64) {
    let fake = FakeGitHub::start().await;
    fake.create_repo(REPO);
    fake.create_repo("octo/elsewhere");
    fake.register_app(APP_ID, TEST_APP_PUBLIC_KEY, token_lifetime);
    let installation = fake.install_app(APP_ID, "octo", &[REPO]);
    (fake, installation)
}

#[tokio::test]
async fn an_app_finds_its_installation_and_reuses_one_installation_token() {
    let (fake, _installation) = app_setup(Duration::from_secs(3600)).await;
    let forge = client(&fake, app_auth(TEST_APP_PRIVATE_KEY, None), fast_policy());
    let repo = RepoRef::parse(REPO).expect("valid");
    let number = fake.create_issue(REPO, "t", "", &[]);
    forge
        .repository(&repo)
        .await
        .expect("repository as the installation");
    let comment = forge
        .create_comment(&repo, number, "hi")
        .await
        .expect("comment");
    assert_eq!(
        comment.user.expect("author").login,
        format!("app-{APP_ID}[bot]")
    );
    assert_eq!(
        forge.whoami().await.expect("whoami"),
        format!("app-{APP_ID}[bot]")
    );
    assert_eq!(
        fake.request_count("GET /repos/{owner}/{repo}/installation"),
        1
    );
    assert_eq!(
        fake.request_count("POST /app/installations/{id}/access_tokens"),
        1
    );
    assert_eq!(
        fake.installation_tokens_issued(),
        1,
        "one token for both requests"
    );
}

#[tokio::test]
async fn a_short_lived_installation_token_is_replaced_before_it_expires() {
    // Four seconds (reported in whole seconds: three to four): replaced after half of that.
    let (fake, installation) = app_setup(Duration::from_secs(4)).await;
    let forge = client(
        &fake,
        app_auth(TEST_APP_PRIVATE_KEY, Some(installation)),
        fast_policy(),
    );
    let repo = RepoRef::parse(REPO).expect("valid");
    forge.repository(&repo).await.expect("first");
    forge.repository(&repo).await.expect("second, same token");
    assert_eq!(fake.installation_tokens_issued(), 1);
    // Past half of the token's life (the refresh point for short-lived tokens), before expiry.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    forge.repository(&repo).await.expect("third, new token");
    assert_eq!(fake.installation_tokens_issued(), 2);
    assert_eq!(fake.status_count(401), 0, "never sent an expired token");
    assert_eq!(
        fake.request_count("GET /repos/{owner}/{repo}/installation"),
        0,
        "the id was given"
    );
}

#[tokio::test]
async fn a_refused_installation_token_is_replaced_once() {
    let (fake, installation) = app_setup(Duration::from_secs(3600)).await;
    let forge = client(
        &fake,
        app_auth(TEST_APP_PRIVATE_KEY, Some(installation)),
        fast_policy(),
    );
    let repo = RepoRef::parse(REPO).expect("valid");
    forge.repository(&repo).await.expect("first");
    fake.expire_installation_tokens();
    forge.repository(&repo).await.expect("after a new token");
    assert_eq!(fake.status_count(401), 1);
    assert_eq!(fake.installation_tokens_issued(), 2);
}

#[tokio::test]
async fn a_jwt_signed_with_another_key_is_refused() {
    let (fake, _) = app_setup(Duration::from_secs(3600)).await;
    let forge = client(&fake, app_auth(OTHER_PRIVATE_KEY, None), fast_policy());
    let repo = RepoRef::parse(REPO).expect("valid");
    let err = forge.repository(&repo).await.expect_err("refused");
    assert!(matches!(err, ForgeError::Unauthorized(_)), "{err:?}");
    assert_eq!(fake.installation_tokens_issued(), 0);
}

#[tokio::test]
async fn an_installation_token_reaches_only_the_installations_repositories() {
    let (fake, installation) = app_setup(Duration::from_secs(3600)).await;
    let forge = client(
        &fake,
        app_auth(TEST_APP_PRIVATE_KEY, Some(installation)),
        fast_policy(),
    );
    let elsewhere = RepoRef::parse("octo/elsewhere").expect("valid");
    assert!(matches!(
        forge.repository(&elsewhere).await,
        Err(ForgeError::NotFound(_))
    ));
    let without_id = client(&fake, app_auth(TEST_APP_PRIVATE_KEY, None), fast_policy());
    assert!(matches!(
        without_id.repository(&elsewhere).await,
        Err(ForgeError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_key_that_is_not_rsa_pem_is_refused_before_any_request() {
    let err =
        orch_forge::Forge::github(orch_forge::ForgeConfig::github(app_auth("not a key", None)))
            .expect_err("refused");
    assert!(matches!(err, ForgeError::Config(_)));
    assert!(err.to_string().contains("private key"), "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("app.pem");
    std::fs::write(&key_file, TEST_APP_PRIVATE_KEY).expect("write key");
    ForgeAuth::app_from_key_file(APP_ID, &key_file, None).expect("a real key file");
    assert!(ForgeAuth::app_from_key_file(APP_ID, &dir.path().join("missing.pem"), None).is_err());
}

#[test]
fn a_token_file_is_trimmed_and_an_empty_or_multi_word_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, "  ghp_secret123\n").expect("write");
    let auth = ForgeAuth::token_from_file(&file).expect("read");
    let shown = format!("{auth:?}");
    assert!(
        !shown.contains("ghp_secret123"),
        "Debug shows no token: {shown}"
    );
    std::fs::write(&file, "\n").expect("write");
    let err = ForgeAuth::token_from_file(&file).expect_err("empty");
    assert!(err.to_string().contains("empty"), "{err}");
    std::fs::write(&file, "ghp_a ghp_b").expect("write");
    assert!(ForgeAuth::token_from_file(&file).is_err());
    let err = ForgeAuth::token_from_env("ORCH_FORGE_TEST_SURELY_UNSET").expect_err("unset");
    assert!(
        err.to_string().contains("ORCH_FORGE_TEST_SURELY_UNSET"),
        "{err}"
    );
}

#[tokio::test]
async fn a_refused_token_is_an_unauthorized_error_that_does_not_show_the_token() {
    let fake = FakeGitHub::start().await;
    fake.create_repo(REPO);
    let forge = client(
        &fake,
        ForgeAuth::Token(SecretString::from("ghp_wrong_token".to_owned())),
        fast_policy(),
    );
    let err = forge
        .repository(&RepoRef::parse(REPO).expect("valid"))
        .await
        .expect_err("refused");
    assert!(matches!(err, ForgeError::Unauthorized(_)));
    assert!(!err.to_string().contains("ghp_wrong_token"));
    assert!(!format!("{forge:?}").contains("ghp_wrong_token"));
}

#[tokio::test]
async fn concurrent_requests_share_one_installation_token() {
    let (fake, _installation) = app_setup(Duration::from_secs(3600)).await;
    let forge = client(&fake, app_auth(TEST_APP_PRIVATE_KEY, None), fast_policy());
    let repo = RepoRef::parse(REPO).expect("valid");
    let calls = (0..6).map(|_| forge.repository(&repo));
    for result in futures_util::future::join_all(calls).await {
        result.expect("repository");
    }
    assert_eq!(fake.installation_tokens_issued(), 1);
    assert_eq!(
        fake.request_count("GET /repos/{owner}/{repo}/installation"),
        1
    );
}
