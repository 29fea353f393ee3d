//! The transport every operation goes through: authentication, rate limits (primary and
//! secondary), conditional GETs (ETag / Last-Modified, 304 = the cached body), and retries of
//! transient failures with bounded exponential backoff and jitter.
//!
//! What is retried:
//! - a rate-limited answer (403/429 with `Retry-After`, `X-RateLimit-Remaining: 0`, or a message
//!   naming the secondary rate limit), any method: GitHub did not process the request. The
//!   client sleeps until the reset (or `Retry-After`, or a default with backoff), unless that is
//!   longer than `max_rate_limit_wait`, then it returns [`ForgeError::RateLimited`]. The limit
//!   is the credential's: every other operation of the client holds its requests until then;
//! - a connection that could not be made, any method: nothing was sent;
//! - a 5xx, a timeout or a connection lost after sending, only for idempotent requests (GET,
//!   PUT, PATCH, DELETE, and the POSTs that are idempotent by nature: adding labels, GraphQL
//!   queries, minting installation tokens). A non-idempotent POST (a new issue, comment or pull
//!   request) returns the error, [`ForgeError::maybe_applied`] says it may have happened, and
//!   the `*_once` operations look for the result before trying again.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, LINK, RETRY_AFTER, USER_AGENT,
};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::auth::{app_jwt, AppCredentials, AppState, InstallationToken};
use crate::{ForgeAuth, ForgeError, RepoRef};

/// How patient the client is.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries of a transient failure (timeouts, connection failures, 5xx) after the first try.
    pub max_retries: u32,
    /// The first backoff; doubled each retry, with jitter.
    pub initial_backoff: Duration,
    /// The longest backoff between two tries.
    pub max_backoff: Duration,
    /// How long one request may take, answer body included.
    pub request_timeout: Duration,
    /// The longest the client waits out rate limits for one operation; past it the operation
    /// fails with [`ForgeError::RateLimited`].
    pub max_rate_limit_wait: Duration,
    /// The wait after a secondary rate limit that names no `Retry-After` (doubled each time).
    pub secondary_rate_limit_wait: Duration,
    /// How long before expiry an installation token is replaced.
    pub token_refresh_margin: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(15 * 60),
            secondary_rate_limit_wait: Duration::from_secs(60),
            token_refresh_margin: Duration::from_secs(5 * 60),
        }
    }
}

/// One request to make.
pub(crate) struct Call<'a> {
    pub method: Method,
    pub url: Url,
    pub body: Option<Value>,
    /// Whether sending it twice does no harm.
    pub idempotent: bool,
    /// The repository it is about (to find the App's installation).
    pub repo: Option<&'a RepoRef>,
    /// Whether it authenticates as the App itself (JWT) rather than as an installation.
    pub as_app: bool,
    /// What it is, for error messages (`GET /repos/o/r/issues/3`).
    pub what: String,
}

/// A successful answer.
pub(crate) struct Answer {
    pub body: Vec<u8>,
    pub next: Option<Url>,
}

struct CachedAnswer {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
    body: Vec<u8>,
    next: Option<Url>,
}

/// GET answers with validators, by URL; bounded, the oldest dropped first.
#[derive(Default)]
struct ConditionalCache {
    entries: HashMap<String, CachedAnswer>,
    order: VecDeque<String>,
}

const CACHE_ENTRIES: usize = 512;

impl ConditionalCache {
    fn insert(&mut self, key: String, answer: CachedAnswer) {
        if self.entries.insert(key.clone(), answer).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > CACHE_ENTRIES {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
    }
}

/// The HTTP side of a client.
pub(crate) struct Http {
    client: reqwest::Client,
    pub api_base: Url,
    pub policy: RetryPolicy,
    auth: ForgeAuth,
    // std mutexes: held only for short synchronous map operations.
    cache: Mutex<ConditionalCache>,
    /// Set when an answer said the quota is spent: no request before this instant.
    blocked_until: Mutex<Option<SystemTime>>,
    // A tokio mutex, held across the token request: concurrent operations wait for one token
    // instead of each minting their own.
    app: tokio::sync::Mutex<AppState>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Http {
    pub fn new(api_base: Url, auth: ForgeAuth, policy: RetryPolicy) -> Result<Http, ForgeError> {
        auth.check()?;
        let client = reqwest::Client::builder()
            .connect_timeout(policy.request_timeout.min(Duration::from_secs(10)))
            // Redirects would carry the credential elsewhere; GitHub's API does not need them.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| ForgeError::Config(format!("build the HTTP client: {err}")))?;
        Ok(Http {
            client,
            api_base,
            policy,
            auth,
            cache: Mutex::new(ConditionalCache::default()),
            blocked_until: Mutex::new(None),
            app: tokio::sync::Mutex::new(AppState::default()),
        })
    }

    /// Whether the client authenticates as a GitHub App.
    pub fn is_app(&self) -> bool {
        matches!(self.auth, ForgeAuth::App(_))
    }

    /// `api_base` joined with path segments, each percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.api_base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .expect("an http(s) base URL has a path");
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    /// The GraphQL endpoint: `{base}/graphql`, or `/api/graphql` for a GHES base `/api/v3`.
    pub fn graphql_url(&self) -> Url {
        let path = self.api_base.path().trim_end_matches('/');
        match path.strip_suffix("/api/v3") {
            Some(prefix) => {
                let mut url = self.api_base.clone();
                url.set_path(&format!("{prefix}/api/graphql"));
                url
            }
            None => self.url(&["graphql"]),
        }
    }

    /// Sends `call`, refreshing an App's installation token once if it was refused.
    pub async fn send(&self, call: &Call<'_>) -> Result<Answer, ForgeError> {
        let mut refreshed = false;
        loop {
            let credential = self.credential(call).await?;
            match self.execute(call, &credential).await {
                Err(ForgeError::Unauthorized(_))
                    if !refreshed && !call.as_app && matches!(self.auth, ForgeAuth::App(_)) =>
                {
                    // The token may have been revoked or expired early: mint a new one, once.
                    self.app.lock().await.tokens.clear();
                    refreshed = true;
                }
                other => return other,
            }
        }
    }

    /// Sends `call` and reads its JSON answer.
    pub async fn json<T: DeserializeOwned>(&self, call: &Call<'_>) -> Result<T, ForgeError> {
        let answer = self.send(call).await?;
        decode(&call.what, &answer.body)
    }

    /// Every page of a list (`per_page=100`, following `Link: rel="next"` on the same origin).
    pub async fn pages<T: DeserializeOwned>(
        &self,
        mut call: Call<'_>,
        max_pages: usize,
    ) -> Result<Vec<T>, ForgeError> {
        if !call.url.query_pairs().any(|(key, _)| key == "per_page") {
            call.url.query_pairs_mut().append_pair("per_page", "100");
        }
        let mut items = Vec::new();
        for _ in 0..max_pages {
            let answer = self.send(&call).await?;
            let page: Vec<T> = decode(&call.what, &answer.body)?;
            items.extend(page);
            match answer.next {
                Some(next) if next.origin() == self.api_base.origin() => call.url = next,
                Some(next) => {
                    return Err(ForgeError::Decode {
                        what: call.what.clone(),
                        reason: format!("the next page is on another host ({next}); not following it with the credential"),
                    })
                }
                None => return Ok(items),
            }
        }
        Ok(items)
    }

    /// The credential git uses for `repo` over HTTPS: the token, or the App's installation
    /// token for the repository's installation (fresh: minted or replaced as for API calls).
    pub async fn git_credential(&self, repo: &RepoRef) -> Result<SecretString, ForgeError> {
        let call = Call {
            method: Method::GET,
            url: self.url(&["repos", &repo.owner, &repo.name]),
            body: None,
            idempotent: true,
            repo: Some(repo),
            as_app: false,
            what: format!("a git credential for {repo}"),
        };
        self.credential(&call).await
    }

    async fn credential(&self, call: &Call<'_>) -> Result<SecretString, ForgeError> {
        match &self.auth {
            ForgeAuth::Token(token) if call.as_app => {
                let _ = token;
                Err(ForgeError::Config(format!(
                    "{} needs GitHub App authentication, not a token",
                    call.what
                )))
            }
            ForgeAuth::Token(token) => Ok(token.clone()),
            ForgeAuth::App(app) if call.as_app => app_jwt(app, SystemTime::now()),
            ForgeAuth::App(app) => self.installation_token(app, call.repo).await,
        }
    }

    /// A fresh installation token for the repository's installation (cached; minted when
    /// missing or within the refresh margin of its expiry).
    async fn installation_token(
        &self,
        app: &AppCredentials,
        repo: Option<&RepoRef>,
    ) -> Result<SecretString, ForgeError> {
        let mut state = self.app.lock().await;
        let installation = match (app.installation_id, repo) {
            (Some(id), _) => id,
            (None, Some(repo)) => match state.installations.get(&repo.to_string()) {
                Some(id) => *id,
                None => {
                    let call = Call {
                        method: Method::GET,
                        url: self.url(&["repos", &repo.owner, &repo.name, "installation"]),
                        body: None,
                        idempotent: true,
                        repo: Some(repo),
                        as_app: true,
                        what: format!("the GitHub App's installation on {repo}"),
                    };
                    let jwt = app_jwt(app, SystemTime::now())?;
                    let answer = self.execute(&call, &jwt).await.map_err(|err| match err {
                        ForgeError::NotFound(message) => ForgeError::NotFound(format!(
                            "{message}; is the GitHub App {} installed on {repo}?",
                            app.app_id
                        )),
                        other => other,
                    })?;
                    let found: Value = decode(&call.what, &answer.body)?;
                    let id = found["id"].as_u64().ok_or_else(|| ForgeError::Decode {
                        what: call.what.clone(),
                        reason: "no installation id".into(),
                    })?;
                    state.installations.insert(repo.to_string(), id);
                    id
                }
            },
            (None, None) => {
                return Err(ForgeError::Config(
                    "the GitHub App has no installation id and the request names no repository; set installation_id".into(),
                ))
            }
        };
        let now = SystemTime::now();
        if let Some(token) = state
            .tokens
            .get(&installation)
            .filter(|token| token.is_fresh(now))
        {
            return Ok(token.token.clone());
        }
        let call = Call {
            method: Method::POST,
            url: self.url(&[
                "app",
                "installations",
                &installation.to_string(),
                "access_tokens",
            ]),
            body: None,
            // A second token is harmless.
            idempotent: true,
            repo,
            as_app: true,
            what: format!("an installation token for installation {installation}"),
        };
        let jwt = app_jwt(app, now)?;
        let issued_at = SystemTime::now();
        let answer = self.execute(&call, &jwt).await?;
        let minted: Value = decode(&call.what, &answer.body)?;
        let (Some(token), Some(expires_at)) =
            (minted["token"].as_str(), minted["expires_at"].as_str())
        else {
            return Err(ForgeError::Decode {
                what: call.what,
                reason: "no token or expires_at".into(),
            });
        };
        let expires_at =
            humantime::parse_rfc3339_weak(expires_at).map_err(|err| ForgeError::Decode {
                what: call.what.clone(),
                reason: format!("expires_at {expires_at}: {err}"),
            })?;
        let token = InstallationToken::new(
            SecretString::from(token.to_owned()),
            issued_at,
            expires_at,
            self.policy.token_refresh_margin,
        );
        let secret = token.token.clone();
        tracing::debug!(installation, expires_at = %humantime::format_rfc3339_seconds(token.expires_at), "minted an installation token");
        state.tokens.insert(installation, token);
        Ok(secret)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .policy
            .initial_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.policy.max_backoff);
        // Equal jitter: half fixed, half random, so retries of many clients spread out.
        let half = base / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(if jitter_ms == 0 {
            0
        } else {
            rand::random_range(0..=jitter_ms)
        })
    }

    /// The retry loop around one request with a given credential.
    async fn execute(
        &self,
        call: &Call<'_>,
        credential: &SecretString,
    ) -> Result<Answer, ForgeError> {
        let mut attempt = 0u32;
        let mut rate_limit_waits = 0u32;
        let mut waited = Duration::ZERO;
        loop {
            self.wait_for_quota(call, &mut waited).await?;
            let cache_key = (call.method == Method::GET).then(|| call.url.to_string());
            let mut request = self
                .client
                .request(call.method.clone(), call.url.clone())
                .timeout(self.policy.request_timeout)
                .header(ACCEPT, "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
                .header(USER_AGENT, concat!("orch/", env!("CARGO_PKG_VERSION")));
            let mut authorization = HeaderValue::from_str(&format!(
                "Bearer {}",
                credential.expose_secret()
            ))
            .map_err(|_| {
                ForgeError::Config("the token holds characters a header cannot carry".into())
            })?;
            authorization.set_sensitive(true);
            request = request.header(AUTHORIZATION, authorization);
            if let Some(key) = &cache_key {
                let cache = lock(&self.cache);
                if let Some(cached) = cache.entries.get(key) {
                    if let Some(etag) = &cached.etag {
                        request = request.header(IF_NONE_MATCH, etag.clone());
                    } else if let Some(modified) = &cached.last_modified {
                        request = request.header(IF_MODIFIED_SINCE, modified.clone());
                    }
                }
            }
            if let Some(body) = &call.body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(err) => {
                    let sent = !err.is_connect();
                    let error = transport_error(call, &err, self.policy.request_timeout);
                    if (call.idempotent || !sent) && attempt < self.policy.max_retries {
                        tracing::debug!(what = %call.what, %error, attempt, "retrying");
                        tokio::time::sleep(self.backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(error);
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            self.note_quota(status, &headers);
            let next = next_link(&headers);
            if status == StatusCode::NOT_MODIFIED {
                if let Some(key) = &cache_key {
                    if let Some(cached) = lock(&self.cache).entries.get(key) {
                        return Ok(Answer {
                            body: cached.body.clone(),
                            next: cached.next.clone(),
                        });
                    }
                }
                return Err(ForgeError::Unexpected {
                    status: 304,
                    message: format!(
                        "{}: 304 Not Modified for a request that was not conditional",
                        call.what
                    ),
                });
            }
            let body = match read_body(response, call).await {
                Ok(body) => body,
                Err(BodyError::TooLarge(error)) => return Err(error),
                Err(BodyError::Transport(err)) => {
                    let error = transport_error(call, &err, self.policy.request_timeout);
                    if call.idempotent && attempt < self.policy.max_retries {
                        tokio::time::sleep(self.backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(error);
                }
            };
            // GraphQL says its rate limit in a 200's errors.
            let graphql_limited = status.is_success()
                && call.url.path().ends_with("/graphql")
                && graphql_rate_limited(&body);
            if status.is_success() && !graphql_limited {
                if let Some(key) = cache_key {
                    let etag = headers.get(ETAG).cloned();
                    let last_modified = headers.get(LAST_MODIFIED).cloned();
                    if etag.is_some() || last_modified.is_some() {
                        lock(&self.cache).insert(
                            key,
                            CachedAnswer {
                                etag,
                                last_modified,
                                body: body.clone(),
                                next: next.clone(),
                            },
                        );
                    }
                }
                return Ok(Answer { body, next });
            }
            let message = error_message(&body);
            let described = format!("{}: {message}", call.what);
            let status = if graphql_limited {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                status
            };
            match status.as_u16() {
                403 | 429 => {
                    match self.rate_limit_wait(status, &headers, &message, rate_limit_waits) {
                        Some(until) => {
                            let wait = until.duration_since(SystemTime::now()).unwrap_or_default();
                            // Every operation of this client waits too: the limit is the
                            // credential's, not this request's.
                            self.block_until(until);
                            if waited + wait > self.policy.max_rate_limit_wait {
                                return Err(ForgeError::RateLimited {
                                    until,
                                    message: described,
                                });
                            }
                            tracing::info!(what = %call.what, wait = ?wait, "rate limited; waiting");
                            tokio::time::sleep(wait).await;
                            waited += wait;
                            rate_limit_waits += 1;
                            continue;
                        }
                        None => return Err(ForgeError::Forbidden(described)),
                    }
                }
                401 => return Err(ForgeError::Unauthorized(described)),
                404 | 410 => return Err(ForgeError::NotFound(described)),
                405 | 409 => {
                    return Err(ForgeError::Conflict {
                        status: status.as_u16(),
                        message: described,
                    })
                }
                422 => return Err(ForgeError::Validation(described)),
                500..=599 => {
                    if call.idempotent && attempt < self.policy.max_retries {
                        tracing::debug!(what = %call.what, status = status.as_u16(), attempt, "retrying");
                        tokio::time::sleep(self.backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(ForgeError::Server {
                        status: status.as_u16(),
                        message: described,
                    });
                }
                other => {
                    return Err(ForgeError::Unexpected {
                        status: other,
                        message: described,
                    })
                }
            }
        }
    }

    /// When a rate-limited answer allows the next try, or `None` if it is not a rate limit.
    fn rate_limit_wait(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        message: &str,
        earlier_waits: u32,
    ) -> Option<SystemTime> {
        let now = SystemTime::now();
        if let Some(seconds) = header_u64(headers, RETRY_AFTER.as_str()) {
            return Some(now + Duration::from_secs(seconds));
        }
        if header_u64(headers, "x-ratelimit-remaining") == Some(0) {
            if let Some(reset) = header_u64(headers, "x-ratelimit-reset") {
                return Some((UNIX_EPOCH + Duration::from_secs(reset)).max(now));
            }
        }
        let secondary = message
            .to_ascii_lowercase()
            .contains("secondary rate limit");
        if secondary || status == StatusCode::TOO_MANY_REQUESTS {
            let wait = self
                .policy
                .secondary_rate_limit_wait
                .saturating_mul(1u32 << earlier_waits.min(8));
            return Some(now + wait);
        }
        None
    }

    /// Remembers a spent quota (`X-RateLimit-Remaining: 0`) from any answer.
    fn note_quota(&self, status: StatusCode, headers: &HeaderMap) {
        if status.is_success() && header_u64(headers, "x-ratelimit-remaining") == Some(0) {
            if let Some(reset) = header_u64(headers, "x-ratelimit-reset") {
                self.block_until(UNIX_EPOCH + Duration::from_secs(reset));
            }
        }
    }

    /// No request of this client before `until` (a rate-limited answer's reset).
    fn block_until(&self, until: SystemTime) {
        let mut blocked = lock(&self.blocked_until);
        *blocked = Some(blocked.map_or(until, |b| b.max(until)));
    }

    /// Waits until a spent quota resets before sending (instead of sending a request that is
    /// sure to be refused).
    async fn wait_for_quota(
        &self,
        call: &Call<'_>,
        waited: &mut Duration,
    ) -> Result<(), ForgeError> {
        let Some(until) = *lock(&self.blocked_until) else {
            return Ok(());
        };
        let wait = until.duration_since(SystemTime::now()).unwrap_or_default();
        if wait.is_zero() {
            *lock(&self.blocked_until) = None;
            return Ok(());
        }
        if *waited + wait > self.policy.max_rate_limit_wait {
            return Err(ForgeError::RateLimited {
                until,
                message: format!("{}: the rate limit quota is spent", call.what),
            });
        }
        tokio::time::sleep(wait).await;
        *waited += wait;
        Ok(())
    }
}

/// Whether a GraphQL answer's errors include `RATE_LIMITED`.
fn graphql_rate_limited(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|value| {
        value["errors"]
            .as_array()
            .is_some_and(|errors| errors.iter().any(|error| error["type"] == "RATE_LIMITED"))
    })
}

/// The most an answer body may hold (GitHub's largest pages are far smaller).
const MAX_BODY: usize = 32 << 20;

enum BodyError {
    TooLarge(ForgeError),
    Transport(reqwest::Error),
}

/// Reads a body, refusing one larger than [`MAX_BODY`] instead of holding it in memory.
async fn read_body(mut response: reqwest::Response, call: &Call<'_>) -> Result<Vec<u8>, BodyError> {
    let too_large = || {
        BodyError::TooLarge(ForgeError::Decode {
            what: call.what.clone(),
            reason: format!("the answer is larger than {} MiB", MAX_BODY >> 20),
        })
    };
    if response
        .content_length()
        .is_some_and(|length| length > MAX_BODY as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<Url> {
    let link = headers.get(LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params
            .split(';')
            .any(|param| param.trim() == "rel=\"next\"")
        {
            return None;
        }
        Url::parse(target.trim().trim_start_matches('<').trim_end_matches('>')).ok()
    })
}

/// GitHub's `message` (and the `errors` of a 422) from an error body.
fn error_message(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return String::from_utf8_lossy(body).chars().take(300).collect();
    };
    let mut message = value["message"].as_str().unwrap_or("no message").to_owned();
    if let Some(errors) = value["errors"].as_array() {
        let details: Vec<String> = errors
            .iter()
            .map(|error| match error {
                Value::String(text) => text.clone(),
                other => other["message"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        format!("{} {} {}", other["resource"], other["field"], other["code"])
                            .replace('"', "")
                    }),
            })
            .collect();
        if !details.is_empty() {
            message = format!("{message} ({})", details.join("; "));
        }
    }
    message
}

fn transport_error(call: &Call<'_>, err: &reqwest::Error, timeout: Duration) -> ForgeError {
    if err.is_timeout() {
        ForgeError::Timeout {
            after: timeout,
            what: call.what.clone(),
        }
    } else {
        // reqwest's errors name the URL, never the headers: no credential leaks here.
        let mut message = format!("{}: {err}", call.what);
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        ForgeError::Transport(message)
    }
}

pub(crate) fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ForgeError> {
    serde_json::from_slice(body).map_err(|err| ForgeError::Decode {
        what: what.to_owned(),
        reason: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("valid header"));
        }
        map
    }

    fn http(policy: RetryPolicy) -> Http {
        Http::new(
            Url::parse("https://api.github.com").expect("url"),
            ForgeAuth::Token(SecretString::from("t".to_owned())),
            policy,
        )
        .expect("client")
    }

    #[test]
    fn the_next_link_is_found_among_others() {
        let map = headers(&[(
            "link",
            "<https://api.github.com/x?page=1>; rel=\"prev\", <https://api.github.com/x?page=3>; rel=\"next\", <https://api.github.com/x?page=9>; rel=\"last\"",
        )]);
        assert_eq!(
            next_link(&map).expect("next").as_str(),
            "https://api.github.com/x?page=3"
        );
        assert_eq!(
            next_link(&headers(&[("link", "<https://a/x>; rel=\"last\"")])),
            None
        );
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn a_422_names_its_errors() {
        let body = br#"{"message":"Validation Failed","errors":[{"resource":"Label","code":"already_exists","field":"name"},{"message":"title is too long"}]}"#;
        assert_eq!(
            error_message(body),
            "Validation Failed (Label name already_exists; title is too long)"
        );
        assert_eq!(
            error_message(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }

    #[test]
    fn rate_limits_are_told_from_plain_refusals() {
        let client = http(RetryPolicy {
            secondary_rate_limit_wait: Duration::from_secs(10),
            ..RetryPolicy::default()
        });
        let now = SystemTime::now();
        let retry_after = client
            .rate_limit_wait(
                StatusCode::FORBIDDEN,
                &headers(&[("retry-after", "30")]),
                "",
                0,
            )
            .expect("a rate limit");
        assert!(retry_after >= now + Duration::from_secs(29));
        let reset = now.duration_since(UNIX_EPOCH).expect("now").as_secs() + 100;
        let primary = client
            .rate_limit_wait(
                StatusCode::FORBIDDEN,
                &headers(&[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &reset.to_string()),
                ]),
                "API rate limit exceeded",
                0,
            )
            .expect("a rate limit");
        assert_eq!(primary, UNIX_EPOCH + Duration::from_secs(reset));
        let secondary = client
            .rate_limit_wait(
                StatusCode::FORBIDDEN,
                &HeaderMap::new(),
                "You have exceeded a secondary rate limit",
                2,
            )
            .expect("a rate limit");
        assert!(
            secondary >= now + Duration::from_secs(40),
            "10 s doubled twice"
        );
        assert!(client
            .rate_limit_wait(
                StatusCode::FORBIDDEN,
                &headers(&[("x-ratelimit-remaining", "4000")]),
                "Resource not accessible by integration",
                0
            )
            .is_none());
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let client = http(RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RetryPolicy::default()
        });
        for attempt in 0..40 {
            let wait = client.backoff(attempt);
            let base = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(16))
                .min(Duration::from_secs(1));
            assert!(
                wait >= base / 2 && wait <= base,
                "attempt {attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn a_ghes_base_has_its_graphql_beside_v3() {
        let mut client = http(RetryPolicy::default());
        assert_eq!(
            client.graphql_url().as_str(),
            "https://api.github.com/graphql"
        );
        client.api_base = Url::parse("https://github.example.com/api/v3/").expect("url");
        assert_eq!(
            client.graphql_url().as_str(),
            "https://github.example.com/api/graphql"
        );
        assert_eq!(
            client
                .url(&["repos", "o", "r", "labels", "status: a/b?"])
                .as_str(),
            "https://github.example.com/api/v3/repos/o/r/labels/status:%20a%2Fb%3F"
        );
    }

    #[test]
    fn a_short_lived_token_is_replaced_half_way_and_a_long_one_five_minutes_early() {
        let issued = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let margin = Duration::from_secs(300);
        let short = InstallationToken::new(
            SecretString::from("a".to_owned()),
            issued,
            issued + Duration::from_secs(4),
            margin,
        );
        assert_eq!(short.refresh_at, issued + Duration::from_secs(2));
        let long = InstallationToken::new(
            SecretString::from("b".to_owned()),
            issued,
            issued + Duration::from_secs(3600),
            margin,
        );
        assert_eq!(long.refresh_at, issued + Duration::from_secs(3300));
        assert!(long.is_fresh(issued + Duration::from_secs(3299)));
        assert!(!long.is_fresh(issued + Duration::from_secs(3300)));
    }
}
