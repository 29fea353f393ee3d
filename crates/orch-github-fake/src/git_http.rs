//! Git over HTTP: each repository's bare repository at `/git/{owner}/{repo}.git`, served by
//! `git http-backend` (CGI) behind basic auth that accepts only a currently valid token as the
//! password (`x-access-token:<token>`, as GitHub takes installation tokens).

use std::process::Stdio;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Shared;

fn challenge(message: &str) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, message.to_owned()).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"fake-github\""),
    );
    response
}

/// The login of a valid basic-auth token, or why the request is refused.
fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    full_name: &str,
) -> Result<String, Box<Response>> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return Err(Box::new(challenge("Authentication required")));
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return Err(Box::new(challenge("Only basic authentication is accepted")));
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| Box::new(challenge("Malformed credentials")))?;
    let Some((_user, password)) = decoded.split_once(':') else {
        return Err(Box::new(challenge("Malformed credentials")));
    };
    let state = shared.lock();
    let Some(grant) = state.tokens.get(password) else {
        return Err(Box::new(challenge("Invalid username or token")));
    };
    if grant
        .expires_at
        .is_some_and(|expires| expires <= SystemTime::now())
    {
        return Err(Box::new(challenge("The token expired")));
    }
    if let Some(installation) = grant.installation {
        let covered = state
            .installations
            .get(&installation)
            .is_some_and(|found| found.repos.iter().any(|repo| repo == full_name));
        if !covered {
            return Err(Box::new(
                (StatusCode::NOT_FOUND, "Repository not found").into_response(),
            ));
        }
    }
    Ok(grant.login.clone())
}

pub async fn serve(
    State(shared): State<Arc<Shared>>,
    Path((owner, rest)): Path<(String, String)>,
    request: Request,
) -> Response {
    let Some((repo_part, _)) = rest.split_once(".git") else {
        return (StatusCode::NOT_FOUND, "Repository not found").into_response();
    };
    let full_name = format!("{owner}/{repo_part}");
    if !shared.lock().repos.contains_key(&full_name) {
        return (StatusCode::NOT_FOUND, "Repository not found").into_response();
    }
    let login = match authorize(&shared, request.headers(), &full_name) {
        Ok(login) => login,
        Err(response) => return *response,
    };
    let (parts, body) = request.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, 512 << 20).await {
        Ok(body) => body,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "request too large").into_response(),
    };
    let header_text = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let is_push = parts.method == axum::http::Method::POST && rest.ends_with("/git-receive-pack");
    let bare = shared
        .lock()
        .repos
        .get(&full_name)
        .map(|repo| repo.bare.clone());
    let before = match (&bare, is_push) {
        (Some(bare), true) => branch_tips(bare),
        _ => Vec::new(),
    };
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{owner}/{rest}"))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header_text(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            header_text(header::CONTENT_ENCODING),
        )
        .env(
            "HTTP_GIT_PROTOCOL",
            parts
                .headers
                .get("git-protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
        )
        // With REMOTE_USER set, http-backend enables receive-pack (pushes).
        .env("REMOTE_USER", &login)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("git http-backend: {err}"),
            )
                .into_response()
        }
    };
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
        drop(stdin);
    });
    let mut stdout = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_end(&mut stdout).await;
    }
    let _ = writer.await;
    let output = match child.wait_with_output().await {
        Ok(output) => output,
        Err(err) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("git http-backend: {err}"),
            )
                .into_response()
        }
    };
    if !output.status.success() && stdout.is_empty() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "git http-backend failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
        )
            .into_response();
    }
    if let (Some(bare), true) = (&bare, is_push) {
        announce_push(&shared, &full_name, &login, &before, &branch_tips(bare));
    }
    cgi_response(&stdout)
}

/// Every branch and its tip.
pub(crate) fn branch_tips(bare: &std::path::Path) -> Vec<(String, String)> {
    crate::git::git(
        bare,
        &[
            "for-each-ref",
            "--format=%(refname:strip=2) %(objectname)",
            "refs/heads",
        ],
    )
    .unwrap_or_default()
    .lines()
    .filter_map(|line| line.split_once(' '))
    .map(|(branch, sha)| (branch.to_owned(), sha.to_owned()))
    .collect()
}

/// The webhooks GitHub sends after a push: `push` per moved branch, and `pull_request`
/// `synchronize` for each open pull whose head moved.
pub(crate) fn announce_push(
    shared: &Shared,
    full_name: &str,
    pusher: &str,
    before: &[(String, String)],
    after: &[(String, String)],
) {
    const ZERO: &str = "0000000000000000000000000000000000000000";
    let tip = |tips: &[(String, String)], branch: &str| {
        tips.iter()
            .find(|(name, _)| name == branch)
            .map_or_else(|| ZERO.to_owned(), |(_, sha)| sha.clone())
    };
    let mut branches: Vec<&str> = before
        .iter()
        .chain(after)
        .map(|(name, _)| name.as_str())
        .collect();
    branches.sort_unstable();
    branches.dedup();
    let mut events = Vec::new();
    {
        let mut state = shared.lock();
        let Some(repo) = state.repos.get_mut(full_name) else {
            return;
        };
        for branch in branches {
            let (old, new) = (tip(before, branch), tip(after, branch));
            if old == new {
                continue;
            }
            events.push((
                "push",
                crate::api::event_payload(
                    &shared.base_url,
                    repo,
                    pusher,
                    "",
                    serde_json::json!({ "ref": format!("refs/heads/{branch}"), "before": old, "after": new }),
                ),
            ));
            let moved: Vec<u64> = repo
                .pulls
                .values()
                .filter(|pull| pull.state == "open" && pull.head == branch)
                .map(|pull| pull.number)
                .collect();
            for number in moved {
                crate::pulls::refresh_head(repo, number);
                let pull = repo.pulls.get(&number).expect("listed above");
                let value = crate::pulls::pull_json(&shared.base_url, repo, pull);
                events.push((
                    "pull_request",
                    crate::api::event_payload(
                        &shared.base_url,
                        repo,
                        pusher,
                        "synchronize",
                        serde_json::json!({ "number": number, "before": old, "after": new, "pull_request": value }),
                    ),
                ));
            }
        }
    }
    for (event, mut payload) in events {
        if event == "push" {
            // Push events have no action.
            if let Some(fields) = payload.as_object_mut() {
                fields.remove("action");
            }
        }
        shared.emit(event, payload);
    }
}

/// Turns CGI output (headers, a blank line, the body) into a response.
fn cgi_response(output: &[u8]) -> Response {
    let split = output
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| (at, 4))
        .or_else(|| {
            output
                .windows(2)
                .position(|window| window == b"\n\n")
                .map(|at| (at, 2))
        });
    let Some((at, gap)) = split else {
        return (
            StatusCode::BAD_GATEWAY,
            "git http-backend answered no headers",
        )
            .into_response();
    };
    let head = String::from_utf8_lossy(&output[..at]).into_owned();
    let body = output[at + gap..].to_vec();
    let mut status = StatusCode::OK;
    let mut response = Response::new(Body::from(body));
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            if let Some(code) = value
                .split_whitespace()
                .next()
                .and_then(|code| code.parse::<u16>().ok())
            {
                status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            }
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    *response.status_mut() = status;
    response
}
