//! The web dashboard over HTTP: the real daemon (`serve`) on 127.0.0.1:0 over a real SQLite
//! store, spoken to like a browser would (cookies and forms by hand, no redirects followed).
//! The browser itself drives it in `orch-cli`'s `browser` tests.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use orch_server::{serve, ServeError, ServeOptions};
use orch_store::{SqliteOptions, Store};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Daemon {
    home: TempDir,
    base: String,
    host: String,
    token: String,
    client: reqwest::Client,
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), ServeError>>,
}

async fn open_store(home: &Path) -> Store {
    Store::open_sqlite(&home.join("orch.db"), SqliteOptions::default())
        .await
        .unwrap()
}

impl Daemon {
    async fn start() -> Daemon {
        Daemon::start_in(tempfile::tempdir().unwrap()).await
    }

    async fn start_in(home: TempDir) -> Daemon {
        let store = open_store(home.path()).await;
        let shutdown = CancellationToken::new();
        let mut options = ServeOptions::new(home.path());
        options.workers = 0;
        options.listen = Some("127.0.0.1:0".parse().unwrap());
        let addr_file = home.path().join("serve.addr");
        let _ = std::fs::remove_file(&addr_file);
        let handle = tokio::spawn(serve(store, options, shutdown.clone()));
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr: SocketAddr = loop {
            let text = std::fs::read_to_string(&addr_file).unwrap_or_default();
            if let Ok(addr) = text.trim().parse() {
                break addr;
            }
            assert!(!handle.is_finished(), "serve stopped before it listened");
            assert!(Instant::now() < deadline, "serve.addr never appeared");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let token = std::fs::read_to_string(home.path().join("token"))
            .unwrap()
            .trim()
            .to_owned();
        Daemon {
            home,
            base: format!("http://{addr}"),
            host: addr.to_string(),
            token,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            shutdown,
            handle,
        }
    }

    async fn stop(self) -> TempDir {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
        self.home
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> (StatusCode, HeaderMap, String) {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }

    /// Post a form as a same-origin page would.
    async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap());
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }

    fn origin(&self) -> String {
        format!("http://{}", self.host)
    }

    /// Sign in with the admin token; returns the `Cookie` header value to send.
    async fn sign_in(&self) -> String {
        let origin = self.origin();
        let (status, headers, _) = self
            .post(
                "/sign-in",
                None,
                &[("token", &self.token), ("name", "alice"), ("next", "/")],
                Some(&origin),
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        session_cookie(&headers).expect("a session cookie")
    }
}

/// The `name=value` of the session cookie set by a response.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("orch_session=") && !v.starts_with("orch_session=;"))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// The hidden CSRF field's value in a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 64].to_owned()
}

#[tokio::test]
async fn pages_without_a_session_redirect_to_sign_in() {
    let daemon = Daemon::start().await;
    for path in ["/", "/inbox", "/live", "/?status=done"] {
        let (status, headers, _) = daemon.get(path, None).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        let location = headers[LOCATION].to_str().unwrap();
        assert!(location.starts_with("/sign-in?next="), "{path}: {location}");
    }
    // A made-up cookie is no session either, and is dropped.
    let (status, headers, _) = daemon.get("/", Some("orch_session=abc")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers
        .get_all(SET_COOKIE)
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("orch_session=;")));
    // Actions too.
    let (status, headers, _) = daemon.post("/sign-out", None, &[], None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers[LOCATION].to_str().unwrap().starts_with("/sign-in"));
    // The sign-in page itself and the assets need none.
    let (status, headers, body) = daemon.get("/sign-in", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("name=\"token\""));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "same-origin");
    let (status, _, _) = daemon.get("/assets/dashboard.css", None).await;
    assert_eq!(status, StatusCode::OK);
    daemon.stop().await;
}

#[tokio::test]
async fn the_admin_token_signs_in_and_sign_out_ends_the_session_on_the_server() {
    let daemon = Daemon::start().await;
    let origin = daemon.origin();
    // A wrong token is refused, and sets nothing.
    let (status, headers, body) = daemon
        .post(
            "/sign-in",
            None,
            &[("token", "wrong"), ("next", "/")],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(session_cookie(&headers).is_none());
    assert!(body.contains("not the admin token"));

    let (status, headers, _) = daemon
        .post(
            "/sign-in",
            None,
            &[
                ("token", &daemon.token),
                ("name", "alice"),
                ("next", "/inbox"),
            ],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/inbox");
    let set = headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("orch_session="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let cookie = session_cookie(&headers).unwrap();
    // The database keeps only the hash of the cookie's secret.
    let secret = cookie.split_once('=').unwrap().1.to_owned();
    let db = std::fs::read(daemon.home.path().join("orch.db")).unwrap();
    let wal = std::fs::read(daemon.home.path().join("orch.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }

    let (status, _, body) = daemon.get("/", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("alice"));
    // An open redirect is not followed.
    let (status, headers, _) = daemon
        .post(
            "/sign-in",
            None,
            &[("token", &daemon.token), ("next", "//evil.example/")],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/");

    // Sign-out needs the CSRF token.
    let (status, _, _) = daemon
        .post("/sign-out", Some(&cookie), &[], Some(&origin))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, _, page) = daemon.get("/", Some(&cookie)).await;
    let csrf = csrf_of(&page);
    let (status, headers, _) = daemon
        .post(
            "/sign-out",
            Some(&cookie),
            &[("csrf", &csrf)],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/sign-in");
    // The same cookie, replayed, is no session any more.
    let (status, _, _) = daemon.get("/", Some(&cookie)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    daemon.stop().await;
}

#[tokio::test]
async fn a_sign_in_link_works_once_and_a_session_outlives_a_restart() {
    let daemon = Daemon::start().await;
    let store = open_store(daemon.home.path()).await;
    let token =
        orch_server::dashboard::auth::create_sign_in_link(&store, "bob", Duration::from_secs(60))
            .await
            .unwrap();
    let path = orch_server::dashboard::auth::sign_in_link_path(&token);
    let (status, headers, body) = daemon.get(&path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("http-equiv=\"refresh\""));
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let cookie = session_cookie(&headers).unwrap();
    let (status, _, body) = daemon.get("/", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("bob"));
    // Used up.
    let (status, headers, body) = daemon.get(&path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(session_cookie(&headers).is_none());
    assert!(body.contains("already used or has expired"));
    // An expired link does nothing either.
    let expired = orch_server::dashboard::auth::create_sign_in_link(&store, "eve", Duration::ZERO)
        .await
        .unwrap();
    let (status, _, _) = daemon
        .get(
            &orch_server::dashboard::auth::sign_in_link_path(&expired),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    store.close().await;

    // The session is in the database: a new daemon on the same home knows it.
    let home = daemon.stop().await;
    let daemon = Daemon::start_in(home).await;
    let (status, _, body) = daemon.get("/", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    daemon.stop().await;
}

#[tokio::test]
async fn cross_site_form_posts_are_refused() {
    let daemon = Daemon::start().await;
    let cookie = daemon.sign_in().await;
    let (_, _, page) = daemon.get("/", Some(&cookie)).await;
    let csrf = csrf_of(&page);
    // Another origin, even with the right token and cookie (ports are the same site, so a
    // SameSite cookie alone would not stop it).
    let (status, _, body) = daemon
        .post(
            "/sign-out",
            Some(&cookie),
            &[("csrf", &csrf)],
            Some("http://127.0.0.1:1"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("another origin"));
    // A browser saying so.
    let response = daemon
        .client
        .post(format!("{}/sign-out", daemon.base))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Another session's token is no good either.
    let other = daemon.sign_in().await;
    let (_, _, other_page) = daemon.get("/", Some(&other)).await;
    let other_csrf = csrf_of(&other_page);
    assert_ne!(other_csrf, csrf);
    let (status, _, _) = daemon
        .post(
            "/sign-out",
            Some(&cookie),
            &[("csrf", &other_csrf)],
            Some(&daemon.origin()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The session still works: nothing was done.
    let (status, _, _) = daemon.get("/", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    daemon.stop().await;
}

/// The flash message a response carries to the next page.
fn flash_of(headers: &HeaderMap) -> String {
    let set = headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("orch_flash="))
        .expect("a flash cookie");
    let value = set
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("orch_flash=");
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={value}"))
        .unwrap()
        .remove(0)
        .1
}

#[tokio::test]
async fn actions_go_through_the_app_and_say_what_they_did_or_why_not() {
    let daemon = Daemon::start().await;
    let origin = daemon.origin();
    let cookie = daemon.sign_in().await;
    let (_, _, page) = daemon.get("/new", Some(&cookie)).await;
    let csrf = csrf_of(&page);
    let project = tempfile::tempdir().unwrap();
    let project_dir = project.path().to_str().unwrap().to_owned();

    // A bad form is shown again with what is wrong, and its input kept.
    let (status, _, body) = daemon
        .post(
            "/new",
            Some(&cookie),
            &[
                ("csrf", &csrf),
                ("project", &project_dir),
                ("title", "Deploy"),
                ("commands", "echo 'unclosed"),
            ],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("commands, line 1"), "{body}");
    assert!(body.contains("value=\"Deploy\""));
    let (status, _, body) = daemon
        .post(
            "/new",
            Some(&cookie),
            &[("csrf", &csrf), ("project", "relative/dir"), ("title", "x")],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("not an absolute path"), "{body}");

    // A good one adds the task under the session's actor.
    let (status, headers, _) = daemon
        .post(
            "/new",
            Some(&cookie),
            &[
                ("csrf", &csrf),
                ("project", &project_dir),
                ("title", "Deploy"),
                ("commands", "echo deploying"),
                ("labels", "ops, prod"),
                ("requires_approval", "on"),
            ],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(flash_of(&headers), "ok:Added task 1.");
    let store = open_store(daemon.home.path()).await;
    let task = store.task(orch_core::TaskId(1)).await.unwrap();
    assert_eq!(task.status, orch_core::Status::AwaitingApproval);
    assert_eq!(task.spec.labels, vec!["ops", "prod"]);
    let events = store.events(orch_core::TaskId(1)).await.unwrap();
    assert_eq!(events[0].actor, "alice");

    // Cancel is refused for what the state does not allow, and says so.
    let (status, headers, _) = daemon
        .post(
            "/tasks/1/approve",
            Some(&cookie),
            &[("csrf", &csrf), ("back", "/inbox"), ("text", "ship it")],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/inbox");
    assert!(flash_of(&headers).starts_with("ok:Task 1 approved"));
    let events = store.events(orch_core::TaskId(1)).await.unwrap();
    let approval = events
        .iter()
        .find(|e| e.kind == orch_core::EventKind::Approve)
        .unwrap();
    assert_eq!(approval.actor, "alice");
    assert_eq!(approval.reason.as_deref(), Some("ship it"));
    let (_, headers, _) = daemon
        .post(
            "/tasks/1/approve",
            Some(&cookie),
            &[("csrf", &csrf), ("back", "https://evil.example/")],
            Some(&origin),
        )
        .await;
    // Refused, and `back` cannot send the browser elsewhere.
    assert_eq!(headers[LOCATION], "/");
    let flash = flash_of(&headers);
    assert!(
        flash.starts_with("error:Not done:") && flash.contains("not waiting for approval"),
        "{flash}"
    );
    let (_, headers, _) = daemon
        .post(
            "/tasks/99/cancel",
            Some(&cookie),
            &[("csrf", &csrf)],
            Some(&origin),
        )
        .await;
    assert!(flash_of(&headers).starts_with("error:Not done:"));
    let (_, headers, _) = daemon
        .post(
            "/tasks/1/kill",
            Some(&cookie),
            &[("csrf", &csrf)],
            Some(&origin),
        )
        .await;
    assert!(
        flash_of(&headers).contains("no live agent session"),
        "{}",
        flash_of(&headers)
    );
    let (_, headers, _) = daemon
        .post(
            "/tasks/1/cancel",
            Some(&cookie),
            &[("csrf", &csrf)],
            Some(&origin),
        )
        .await;
    assert!(flash_of(&headers).starts_with("ok:Task 1 cancelled"));
    let (_, headers, _) = daemon
        .post(
            "/tasks/1/cancel",
            Some(&cookie),
            &[("csrf", &csrf)],
            Some(&origin),
        )
        .await;
    assert!(flash_of(&headers).contains("only tasks that have not finished"));

    // The next page shows the flash once.
    let flash_cookie = format!("{cookie}; orch_flash=error%3AOnce");
    let (_, headers, body) = daemon.get("/", Some(&flash_cookie)).await;
    assert!(body.contains("id=\"flash\">Once<"), "{body}");
    assert!(headers
        .get_all(SET_COOKIE)
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("orch_flash=;")));
    // A wrong filter is said, not an error.
    let (status, _, body) = daemon.get("/?status=bogus&q=Deploy", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("status: "), "{body}");
    assert!(body.contains("data-task=\"1\""));
    store.close().await;
    daemon.stop().await;
}

/// The first `transition` event of a server-sent event stream, as its raw `data`, within 20 s.
async fn first_transition(response: reqwest::Response) -> String {
    use futures_util::StreamExt;
    let mut body = Box::pin(response.bytes_stream());
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if block.lines().any(|l| l.trim() == "event: transition") {
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                return data.join("\n");
            }
        }
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("a transition event within 20 s")
            .expect("the stream stays open")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Read `text` as `T` and check that `T` keeps every field: a renamed or dropped field in the
/// `orch-api` type fails here, not in a page.
fn exactly<T: serde::de::DeserializeOwned + serde::Serialize>(text: &str) -> T {
    let raw: serde_json::Value = serde_json::from_str(text).unwrap();
    let typed: T = serde_json::from_value(raw.clone())
        .unwrap_or_else(|e| panic!("{text} is not a {}: {e}", std::any::type_name::<T>()));
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        raw,
        "fields lost reading {text}"
    );
    typed
}

#[tokio::test]
async fn the_dashboard_and_the_api_show_a_task_through_the_same_orch_api_types() {
    let daemon = Daemon::start().await;
    let cookie = daemon.sign_in().await;
    // The dashboard's live script's stream (session cookie) and the API's (bearer token),
    // both subscribed before the task exists.
    let live = daemon
        .client
        .get(format!("{}/live", daemon.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let api_stream = daemon
        .client
        .get(format!("{}/v1/events", daemon.base))
        .bearer_auth(&daemon.token)
        .send()
        .await
        .unwrap();
    assert_eq!(api_stream.status(), StatusCode::OK);

    let project = tempfile::tempdir().unwrap();
    let create: orch_api::CreateTask = serde_json::from_value(serde_json::json!({
        "project": project.path().to_str().unwrap(),
        "title": "typed <b>once</b>",
        "labels": ["typed"],
    }))
    .unwrap();
    let response = daemon
        .client
        .post(format!("{}/v1/tasks", daemon.base))
        .bearer_auth(&daemon.token)
        .json(&create)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: orch_api::CreatedTask = exactly(&response.text().await.unwrap());
    let created = created.task;

    // What the browser receives on `/live` is an `orch_api::StreamedEvent`, the same as the
    // API's stream sends and with the event `GET /v1/tasks/{id}` shows.
    let from_live: orch_api::StreamedEvent = exactly(&first_transition(live).await);
    let from_api: orch_api::StreamedEvent = exactly(&first_transition(api_stream).await);
    assert_eq!(from_live, from_api);
    assert_eq!(from_live.task, created.id);
    let detail = daemon
        .client
        .get(format!("{}/v1/tasks/{}", daemon.base, created.id))
        .bearer_auth(&daemon.token)
        .send()
        .await
        .unwrap();
    let detail: orch_api::TaskDetail = serde_json::from_str(&detail.text().await.unwrap()).unwrap();
    assert_eq!(detail.task, created);
    assert_eq!(detail.events.first(), Some(&from_live.event));

    // The board's row and the task page render that same `TaskView`.
    let (status, _, board) = daemon.get("/", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let row = format!(
        "<tr data-task=\"{}\" data-status=\"{}\">",
        created.id, created.status
    );
    assert!(board.contains(&row), "{row} not in the board");
    assert!(
        board.contains("typed ") && board.contains("once"),
        "the title is shown"
    );
    assert!(!board.contains("<b>once</b>"), "the title is escaped");
    let (status, _, page) = daemon
        .get(&format!("/tasks/{}", created.id), Some(&cookie))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&format!(
        "data-task=\"{}\" data-status=\"{}\"",
        created.id, created.status
    )));
    daemon.stop().await;
}
