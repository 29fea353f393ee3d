//! Signing in to the dashboard, sessions and CSRF.
//!
//! - `GET /sign-in` shows a form taking the admin token (`<home>/token`); `POST /sign-in`
//!   checks it (constant time) and starts a session.
//! - `GET /sign-in/link?token=...` uses a one-time sign-in link ([`create_sign_in_link`], which
//!   `orch serve` and `orch dashboard` print): single use, short-lived.
//! - `POST /sign-out` ends the session in the database (the cookie alone is worth nothing then).
//!
//! A session is a random 32-byte secret in an HttpOnly, SameSite=Strict, Path=/ cookie (Secure
//! and `__Host-` prefixed under TLS); the database keeps only its SHA-256, shared by every
//! server on it, so a restart signs nobody out. The CSRF token is derived from the secret
//! (SHA-256 of a fixed label and the secret): per session, never stored, checked in constant
//! time on every form post, together with `Origin` and `Sec-Fetch-Site`.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::header::{COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cookie::{Cookie, SameSite};
use orch_core::Timestamp;
use orch_store::{DashboardGrant, Store, StoreError};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Flash, PageError};
use crate::api::ApiState;

/// The session cookie's name over plain HTTP (loopback or behind a TLS terminator).
pub const SESSION_COOKIE: &str = "orch_session";
/// The session cookie's name over HTTPS: the `__Host-` prefix makes browsers refuse it unless
/// it is Secure, host-only and `Path=/`.
pub const SESSION_COOKIE_TLS: &str = "__Host-orch_session";
/// The cookie carrying a one-time result message to the next page.
pub const FLASH_COOKIE: &str = "orch_flash";
/// The actor a sign-in with the admin token is recorded under when no name is given.
pub const DEFAULT_ACTOR: &str = "dashboard";
/// The largest form body an action takes.
const FORM_LIMIT: usize = 256 * 1024;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/sign-in", get(sign_in_form).post(sign_in))
        .route("/sign-in/link", get(sign_in_with_link))
        .route("/sign-out", axum::routing::post(sign_out))
}

/// The hex SHA-256 of a secret: what the database keeps.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random secret: 32 bytes, hex.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The CSRF token of the session whose cookie holds `secret`.
fn csrf_for(secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"orch-dashboard-csrf\0");
    hasher.update(secret.as_bytes());
    hex::encode(hasher.finalize())
}

fn now() -> Timestamp {
    orch_store::wall_clock()
}

/// Create a one-time sign-in link's token for `actor`, valid for `ttl`; the link is
/// `<base>/sign-in/link?token=<token>`. Only the token's hash is stored.
pub async fn create_sign_in_link(
    store: &Store,
    actor: &str,
    ttl: Duration,
) -> Result<String, StoreError> {
    let token = new_secret();
    let at = now();
    store
        .create_sign_in_link(&DashboardGrant {
            token_hash: hash_secret(&token),
            actor: actor.to_owned(),
            created_at: at,
            expires_at: at.after(ttl),
        })
        .await?;
    Ok(token)
}

/// The path of a sign-in link with `token` (append it to the server's base URL).
pub fn sign_in_link_path(token: &str) -> String {
    format!("/sign-in/link?token={token}")
}

/// A signed-in browser: what every page and action takes. Without a valid session the request
/// is answered with a redirect to `/sign-in`.
#[derive(Debug, Clone)]
pub struct Session {
    /// The name actions are recorded under.
    pub actor: String,
    /// This session's CSRF token (every form's hidden `csrf` field).
    pub csrf: String,
    /// The message left by the previous action, if any.
    pub flash: Option<Flash>,
    token_hash: String,
}

fn cookies(headers: &HeaderMap) -> impl Iterator<Item = Cookie<'static>> + '_ {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| Cookie::split_parse_encoded(value.to_owned()))
        .filter_map(Result::ok)
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    cookies(headers)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

fn session_cookie_name(tls: bool) -> &'static str {
    if tls {
        SESSION_COOKIE_TLS
    } else {
        SESSION_COOKIE
    }
}

fn session_cookie(tls: bool, secret: &str, max_age: Duration) -> String {
    Cookie::build((session_cookie_name(tls), secret.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(tls)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .build()
        .to_string()
}

fn clear_session_cookie(tls: bool) -> String {
    Cookie::build((session_cookie_name(tls), ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(tls)
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

/// The `Set-Cookie` value that clears the flash message.
pub fn clear_flash_cookie() -> String {
    Cookie::build((FLASH_COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

fn flash_cookie(flash: &Flash) -> String {
    let value = format!(
        "{}:{}",
        if flash.ok { "ok" } else { "error" },
        flash.message
    );
    Cookie::build((FLASH_COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(cookie::time::Duration::minutes(5))
        .build()
        .encoded()
        .to_string()
}

fn read_flash(headers: &HeaderMap) -> Option<Flash> {
    let value = cookie_value(headers, FLASH_COOKIE)?;
    let (kind, message) = value.split_once(':')?;
    // Bounded, and only text: it is rendered escaped like everything else.
    let message: String = message.chars().take(2000).collect();
    (!message.is_empty()).then(|| Flash {
        ok: kind == "ok",
        message,
    })
}

/// A 303 to `to` carrying `flash` for the next page: how every action answers.
pub fn redirect_with_flash(to: &str, flash: Flash) -> Response {
    let mut response = see_other(to);
    if let Ok(value) = HeaderValue::from_str(&flash_cookie(&flash)) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// A 303 See Other to a local path.
pub fn see_other(to: &str) -> Response {
    let to = if is_local_path(to) { to } else { "/" };
    (
        StatusCode::SEE_OTHER,
        [(
            LOCATION,
            HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
        )],
    )
        .into_response()
}

/// A path on this server (`/...`, not `//host` nor `/\host`, no control characters): the only
/// kind of place a `next` parameter may send a browser to.
pub fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && !path.chars().any(|c| c.is_control() || c == '\\')
}

fn to_sign_in(parts: &Parts, tls: bool) -> Response {
    let next = if parts.method == Method::GET {
        parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned()
    } else {
        "/".to_owned()
    };
    let query = serde_urlencoded::to_string([("next", next.as_str())]).unwrap_or_default();
    let mut response = see_other(&format!("/sign-in?{query}"));
    // A cookie naming no session (ended, expired) is dropped.
    if cookie_value(&parts.headers, session_cookie_name(tls)).is_some() {
        if let Ok(value) = HeaderValue::from_str(&clear_session_cookie(tls)) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

impl Session {
    async fn find(headers: &HeaderMap, state: &ApiState) -> Result<Option<Session>, PageError> {
        let tls = state.dashboard.tls;
        let Some(secret) = cookie_value(headers, session_cookie_name(tls)) else {
            return Ok(None);
        };
        let token_hash = hash_secret(&secret);
        let Some(grant) = state.store.dashboard_session(&token_hash, now()).await? else {
            return Ok(None);
        };
        Ok(Some(Session {
            actor: grant.actor,
            csrf: csrf_for(&secret),
            flash: read_flash(headers),
            token_hash,
        }))
    }
}

impl FromRequestParts<ApiState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Response> {
        match Session::find(&parts.headers, state).await {
            Ok(Some(session)) => Ok(session),
            Ok(None) => Err(to_sign_in(parts, state.dashboard.tls)),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// Refuse a form posted from another site: `Sec-Fetch-Site` must say `same-origin` when the
/// browser sends it, and `Origin`, when sent, must be this server (its host and port).
pub fn check_same_origin(headers: &HeaderMap, authority: Option<&str>) -> Result<(), PageError> {
    if let Some(site) = headers.get("sec-fetch-site") {
        if site.as_bytes() != b"same-origin" {
            return Err(PageError::Forbidden(format!(
                "This form was sent from another site (Sec-Fetch-Site: {}), so it was refused. \
                 Use the dashboard's own pages to act.",
                String::from_utf8_lossy(site.as_bytes())
            )));
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or(authority)
            .unwrap_or("");
        let origin_host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        if host.is_empty() || !origin_host.is_some_and(|o| o.eq_ignore_ascii_case(host)) {
            return Err(PageError::Forbidden(format!(
                "This form was sent from another origin ({origin}), so it was refused. Use the \
                 dashboard's own pages to act."
            )));
        }
    }
    Ok(())
}

/// A form posted by a signed-in browser, its CSRF token and origin checked: what every action
/// takes. The body is `application/x-www-form-urlencoded` with a `csrf` field; `T` reads the
/// other fields (unknown ones, like `csrf`, are ignored unless `T` denies them).
#[derive(Debug)]
pub struct CsrfForm<T> {
    /// The session.
    pub session: Session,
    /// The form's fields.
    pub form: T,
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned + Send> FromRequest<ApiState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &ApiState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        check_same_origin(&parts.headers, parts.uri.authority().map(|a| a.as_str()))
            .map_err(IntoResponse::into_response)?;
        let session = Session::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| {
            PageError::BadRequest("the form is too large or was cut off".to_owned()).into_response()
        })?;
        let field: CsrfField = serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfField {
            csrf: String::new(),
        });
        if !bool::from(field.csrf.as_bytes().ct_eq(session.csrf.as_bytes())) {
            return Err(PageError::Forbidden(
                "The form's CSRF token is missing or is not this session's, so nothing was done. \
                 Reload the page and try again."
                    .to_owned(),
            )
            .into_response());
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            PageError::BadRequest(format!("the form could not be read: {e}")).into_response()
        })?;
        Ok(CsrfForm { session, form })
    }
}

#[derive(askama::Template)]
#[template(path = "sign_in.html")]
struct SignInPage<'a> {
    next: &'a str,
    error: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct SignInQuery {
    #[serde(default)]
    next: Option<String>,
}

fn next_or_root(next: Option<&str>) -> &str {
    next.filter(|n| is_local_path(n) && !n.starts_with("/sign-in"))
        .unwrap_or("/")
}

/// `GET /sign-in`: the form (or straight on, for a browser already signed in).
async fn sign_in_form(
    State(state): State<ApiState>,
    query: Result<Query<SignInQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let next = query.as_ref().ok().and_then(|q| q.next.as_deref());
    let next = next_or_root(next);
    if let Ok(Some(_)) = Session::find(&headers, &state).await {
        return see_other(next);
    }
    super::render_with_status(StatusCode::OK, &SignInPage { next, error: None }, false)
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    next: Option<String>,
}

/// The name actions are recorded under: what the user typed, if it is a plain name.
fn actor_name(name: &str) -> Result<String, &'static str> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(DEFAULT_ACTOR.to_owned());
    }
    if name.chars().count() > 64
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ' '))
    {
        return Err("Your name may have up to 64 letters, digits, spaces and - _ . @");
    }
    Ok(name.to_owned())
}

async fn start_session(state: &ApiState, actor: &str) -> Result<String, PageError> {
    let secret = new_secret();
    let at = now();
    state
        .store
        .create_dashboard_session(&DashboardGrant {
            token_hash: hash_secret(&secret),
            actor: actor.to_owned(),
            created_at: at,
            expires_at: at.after(state.dashboard.session_ttl),
        })
        .await?;
    Ok(secret)
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// `POST /sign-in`: the admin token starts a session.
async fn sign_in(State(state): State<ApiState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if let Err(e) = check_same_origin(&parts.headers, parts.uri.authority().map(|a| a.as_str())) {
        return e.into_response();
    }
    let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
        return PageError::BadRequest("the form is too large".to_owned()).into_response();
    };
    let form: SignInForm = match serde_urlencoded::from_bytes(&bytes) {
        Ok(form) => form,
        Err(e) => {
            return PageError::BadRequest(format!("the form could not be read: {e}"))
                .into_response()
        }
    };
    let next = next_or_root(form.next.as_deref()).to_owned();
    let refuse = |message: &str| {
        super::render_with_status(
            StatusCode::UNAUTHORIZED,
            &SignInPage {
                next: &next,
                error: Some(message),
            },
            false,
        )
    };
    let actor = match actor_name(&form.name) {
        Ok(actor) => actor,
        Err(message) => return refuse(message),
    };
    let presented = form.token.trim();
    if presented.is_empty() || !bool::from(presented.as_bytes().ct_eq(state.token.as_bytes())) {
        return refuse(
            "That is not the admin token. It is in the file `token` in the orch home \
             (`cat ~/.local/share/orch/token` by default); or run `orch dashboard` for a \
             sign-in link.",
        );
    }
    match start_session(&state, &actor).await {
        Ok(secret) => with_cookie(
            see_other(&next),
            &session_cookie(state.dashboard.tls, &secret, state.dashboard.session_ttl),
        ),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct LinkQuery {
    #[serde(default)]
    token: String,
}

#[derive(askama::Template)]
#[template(path = "signed_in.html")]
struct SignedInPage;

/// `GET /sign-in/link?token=...`: a one-time link starts a session (and is used up).
async fn sign_in_with_link(
    State(state): State<ApiState>,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Response {
    let token = query.map(|Query(q)| q.token).unwrap_or_default();
    let refused = || {
        super::render_with_status(
            StatusCode::UNAUTHORIZED,
            &SignInPage {
                next: "/",
                error: Some(
                    "This sign-in link was already used or has expired. Run `orch dashboard` \
                     for a new one, or sign in with the admin token.",
                ),
            },
            false,
        )
    };
    if token.is_empty() {
        return refused();
    }
    let secret = new_secret();
    let at = now();
    let session = DashboardGrant {
        token_hash: hash_secret(&secret),
        actor: String::new(),
        created_at: at,
        expires_at: at.after(state.dashboard.session_ttl),
    };
    match state
        .store
        .sign_in_with_link(&hash_secret(&token), &session)
        .await
    {
        Ok(Some(_)) => {
            // A page of our own that moves on to the board: a redirect chain begun by another
            // application would not send the SameSite=Strict cookie to the board.
            let mut page = super::render_with_status(StatusCode::OK, &SignedInPage, false);
            // Its URL holds the link's token: no `Referer` from it, not even to us.
            page.headers_mut().insert(
                axum::http::header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            with_cookie(
                page,
                &session_cookie(state.dashboard.tls, &secret, state.dashboard.session_ttl),
            )
        }
        Ok(None) => refused(),
        Err(e) => PageError::from(e).into_response(),
    }
}

/// `POST /sign-out`: end the session in the database and drop the cookie.
async fn sign_out(State(state): State<ApiState>, form: CsrfForm<CsrfField>) -> Response {
    let _ = form.form.csrf;
    match state
        .store
        .end_dashboard_session(&form.session.token_hash)
        .await
    {
        Ok(_) => with_cookie(
            see_other("/sign-in"),
            &clear_session_cookie(state.dashboard.tls),
        ),
        Err(e) => PageError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert!(is_local_path("/"));
        assert!(is_local_path("/tasks/3?x=1"));
        assert!(!is_local_path("//evil.example/"));
        assert!(!is_local_path("/\\evil.example/"));
        assert!(!is_local_path("https://evil.example/"));
        assert!(!is_local_path("javascript:alert(1)"));
        assert!(!is_local_path("/a\r\nSet-Cookie: x=y"));
        assert_eq!(next_or_root(Some("/sign-in?next=/")), "/");
        assert_eq!(next_or_root(Some("/inbox")), "/inbox");
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_are_not_the_secret() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(csrf_for(&a), csrf_for(&b));
        assert_ne!(csrf_for(&a), a);
        assert_ne!(csrf_for(&a), hash_secret(&a));
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(check_same_origin(&headers, None).is_ok());
        headers.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(check_same_origin(&headers, None).is_ok());
        headers.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:9090"));
        assert!(check_same_origin(&headers, None).is_err());
        headers.insert(ORIGIN, HeaderValue::from_static("null"));
        assert!(check_same_origin(&headers, None).is_err());
        headers.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(check_same_origin(&headers, None).is_err());
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(check_same_origin(&headers, None).is_ok());
    }

    #[test]
    fn names_are_plain() {
        assert_eq!(actor_name("").as_deref(), Ok(DEFAULT_ACTOR));
        assert_eq!(actor_name(" alice ").as_deref(), Ok("alice"));
        assert!(actor_name("<script>").is_err());
        assert!(actor_name(&"a".repeat(65)).is_err());
    }
}
