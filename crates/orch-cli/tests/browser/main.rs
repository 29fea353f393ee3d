//! The web dashboard in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `.ci/run` installs) driven over WebDriver, against the real `orch
//! serve` on a temporary home (the e2e harness's `Home`).
//!
//! Without Chromium the tests print why and pass locally; in CI (`CI` set) they fail.
//! They write the screenshots in `docs/screenshots/` that the README shows.

#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

// The task page, diff comments and the workflow view (dashview).
mod dashview;
// Answering info requests in the inbox and the cron jobs page (govgaps).
mod governance;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use support::{poll_until, task_events, Home, Process, Repo};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a page may take to show what a test waits for.
const UI_DEADLINE: Duration = Duration::from_secs(30);

/// Whether Chromium is here; if not, fail in CI and skip (saying why) elsewhere.
fn chromium_available(test: &str) -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "{test}: {} not installed (apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{reason}; CI must run the browser tests");
    }
    eprintln!("skipped: {reason}");
    false
}

/// A chromedriver process and one browser session in it; both end when dropped.
struct Browser {
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    async fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            client: None,
            driver,
            _profile: profile,
        };
        poll_until("chromedriver to listen", UI_DEADLINE, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // Tests run as root in CI, where Chromium's own sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("start a Chromium session");
        browser.client = Some(client);
        browser
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    async fn goto(&self, url: &str) {
        self.c().goto(url).await.unwrap();
    }

    async fn path(&self) -> String {
        let url = self.c().current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn text(&self, css: &str) -> String {
        let mut tries = 0;
        loop {
            let element = self
                .c()
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("find `{css}`: {e}"));
            match element.text().await {
                Ok(text) => return text,
                // The live board replaced the element between find and read: find it again.
                Err(e) if stale(&e) && tries < 50 => tries += 1,
                Err(e) => panic!("the text of `{css}`: {e}"),
            }
        }
    }

    /// The attribute `name` of the element `css` (`None`: not set), found again when the live
    /// page replaced it in between.
    async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let mut tries = 0;
        loop {
            let element = self
                .c()
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("find `{css}`: {e}"));
            match element.attr(name).await {
                Ok(value) => return value,
                Err(e) if stale(&e) && tries < 50 => tries += 1,
                Err(e) => panic!("the attribute `{name}` of `{css}`: {e}"),
            }
        }
    }

    /// Click an element (found again if a live refresh replaced it between the find and the
    /// click).
    async fn click(&self, css: &str) {
        let mut tries = 0;
        loop {
            let element = self
                .c()
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("find `{css}`: {e}"));
            match element.click().await {
                Ok(()) => return,
                Err(e) if tries < 5 && e.to_string().contains("stale element") => tries += 1,
                Err(e) => panic!("click `{css}`: {e}"),
            }
        }
    }

    /// Type into a field (again if a live refresh replaced it before it had the focus).
    async fn type_into(&self, css: &str, text: &str) {
        for _ in 0..5 {
            let field = self.c().find(Locator::Css(css)).await.unwrap();
            field.click().await.ok();
            if field.clear().await.is_ok() && field.send_keys(text).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("could not type into `{css}`");
    }

    /// Wait until `css` matches an element.
    async fn wait_for(&self, css: &str) {
        let found = self
            .c()
            .wait()
            .at_most(UI_DEADLINE)
            .for_element(Locator::Css(css))
            .await;
        if let Err(e) = found {
            let at = self.c().current_url().await.map(|u| u.to_string());
            let source = self.c().source().await.unwrap_or_default();
            panic!("`{css}` never appeared ({e}); at {at:?}:\n{source}");
        }
    }

    async fn js(&self, script: &str) -> Value {
        self.c().execute(script, Vec::new()).await.unwrap()
    }

    /// Write a screenshot to `docs/screenshots/<name>.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.c().screenshot().await.unwrap();
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
}

/// A daemon on a fresh home with a browser signed in to its dashboard.
struct Dashboard {
    home: Home,
    serve: Option<Process>,
    base: String,
    browser: Browser,
}

impl Dashboard {
    async fn start(workers: usize, width: u32, height: u32) -> Dashboard {
        let home = Home::new();
        Dashboard::start_on(home, workers, width, height).await
    }

    async fn start_on(home: Home, workers: usize, width: u32, height: u32) -> Dashboard {
        let workers = workers.to_string();
        let serve = home.serve(&["--workers", &workers, "--lease", "5s", "--grace", "1s"]);
        let base = format!("http://{}", home.serve_addr());
        let browser = Browser::start(width, height).await;
        Dashboard {
            home,
            serve: Some(serve),
            base,
            browser,
        }
    }

    /// `orch dashboard --no-open`: a fresh one-time link.
    fn link(&self) -> String {
        let finished = self.home.run(&["dashboard", "--no-open"]);
        finished.expect_code(0, "orch dashboard --no-open");
        let link = finished.stdout.trim().to_owned();
        assert!(
            link.starts_with(&format!("{}/sign-in/link?token=", self.base)),
            "{link}"
        );
        link
    }

    async fn sign_in(&self) {
        self.browser.goto(&self.link()).await;
        self.browser.wait_for("#board-live").await;
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn stop(mut self) -> support::Finished {
        self.browser.close().await;
        self.serve.take().unwrap().kill()
    }
}

/// The name a local sign-in link records actions under.
fn local_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .map_or_else(|| "local".to_owned(), |s| s.trim().to_owned())
}

/// Whether a WebDriver error says the element left the page (the live board re-rendered it).
fn stale(error: &fantoccini::error::CmdError) -> bool {
    matches!(
        error,
        fantoccini::error::CmdError::Standard(e)
            if e.error == fantoccini::error::ErrorStatus::StaleElementReference
    )
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + UI_DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {UI_DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_link_signs_in_and_a_page_without_a_session_goes_to_sign_in() {
    if !chromium_available("sign-in") {
        return;
    }
    let dash = Dashboard::start(0, 1200, 800).await;
    let b = &dash.browser;
    for path in ["/", "/inbox", "/new"] {
        b.goto(&dash.url(path)).await;
        b.wait_for("input[name=token]").await;
        let at = b.path().await;
        assert!(at.starts_with("/sign-in?next="), "{path} went to {at}");
    }
    // The link signs in (and then goes on to the board by itself).
    let link = dash.link();
    b.goto(&link).await;
    b.wait_for("#board-live").await;
    assert_eq!(b.path().await, "/");
    assert_eq!(b.text(".who").await, local_user());
    // A page that needed a session now shows.
    b.goto(&dash.url("/inbox")).await;
    b.wait_for("#inbox-live").await;
    // The link was for one use.
    b.goto(&link).await;
    b.wait_for("#sign-in-error").await;
    assert!(b.text("#sign-in-error").await.contains("already used"));
    // Signing out ends the session: the board asks to sign in again.
    b.goto(&dash.url("/")).await;
    b.click(".sign-out button").await;
    b.wait_for("input[name=token]").await;
    b.goto(&dash.url("/")).await;
    b.wait_for("input[name=token]").await;
    // The admin token signs in too, under the name given.
    let token = std::fs::read_to_string(dash.home.path().join("token")).unwrap();
    b.type_into("input[name=token]", token.trim()).await;
    b.type_into("input[name=name]", "alice").await;
    b.click("form button[type=submit]").await;
    b.wait_for("#board-live").await;
    assert_eq!(b.text(".who").await, "alice");
    // `orch serve` printed a link of its own at start.
    let serve = dash.stop().await;
    assert!(
        serve.stderr.contains("one-time sign-in link")
            && serve.stderr.contains("/sign-in/link?token="),
        "{}",
        serve.stderr
    );
}

/// A tiny web server on another origin serving one page: what an attacker's site would be.
fn attacker_site(html: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    format!("http://{addr}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_posted_from_another_site_is_refused() {
    if !chromium_available("cross-site") {
        return;
    }
    let dash = Dashboard::start(0, 1200, 800).await;
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let ids = dash.home.submit(
        "victim",
        "name: victim\ntasks:\n  - id: one\n    title: Keep me\n    steps:\n      - name: s\n        exec:\n          - argv: [\"true\"]\n",
        repo.path(),
    );
    let id = ids["one"];
    dash.sign_in().await;
    let b = &dash.browser;
    // The attacker's page on another port (the same site for cookies, another origin) posts to
    // the dashboard with the browser's session cookie.
    let page = attacker_site(format!(
        "<!doctype html><form method=post action=\"{}/tasks/{id}/cancel\">\
         <input name=csrf value=guess><input name=back value=/>\
         <button id=go>Win a prize</button></form>",
        dash.base
    ));
    b.goto(&page).await;
    b.click("#go").await;
    b.wait_for("#error-message").await;
    let message = b.text("#error-message").await;
    assert!(message.contains("another"), "{message}");
    assert_eq!(dash.home.task_status(id), "queued");
    dash.stop().await;
}

const WORKFLOW: &str = "name: pipeline
tasks:
  - id: build
    title: Build
    labels: [ci]
    steps:
      - name: build
        exec:
          - argv: [\"true\"]
  - id: test
    title: Test
    needs: [build]
    labels: [ci]
    steps:
      - name: test
        exec:
          - argv: [sleep, \"1\"]
  - id: package
    title: Package
    needs: [test]
    labels: [ci, release]
    steps:
      - name: package
        exec:
          - argv: [\"true\"]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_submitted_in_the_dashboard_moves_to_done_on_the_board_without_a_reload() {
    if !chromium_available("workflow") {
        return;
    }
    let dash = Dashboard::start(2, 1280, 760).await;
    let repo = Repo::new(&[("README.md", "hi\n")]);
    // Some tasks around it, so the board shows several statuses.
    dash.home.submit(
        "others",
        "name: others\ntasks:\n  - id: gated\n    title: Deploy to production\n    requires_approval: true\n    labels: [deploy]\n    steps:\n      - name: s\n        exec:\n          - argv: [\"true\"]\n  - id: broken\n    title: Lint the docs\n    retry: {max_attempts: 1}\n    labels: [docs]\n    steps:\n      - name: s\n        exec:\n          - argv: [\"false\"]\n",
        repo.path(),
    );
    dash.sign_in().await;
    let b = &dash.browser;
    b.goto(&dash.url("/new")).await;
    b.type_into(
        "#new-workflow input[name=project]",
        repo.path().to_str().unwrap(),
    )
    .await;
    b.type_into("#new-workflow textarea[name=yaml]", WORKFLOW)
        .await;
    b.click("#new-workflow button[type=submit]").await;
    b.wait_for("#flash").await;
    let flash = b.text("#flash").await;
    assert!(flash.contains("Submitted the workflow"), "{flash}");
    assert!(b.path().await.starts_with("/?workflow="));
    // From here on the page is never reloaded: a marker set now survives to the end.
    b.js("window.orchTestMarker = 42; return null;").await;
    wait_until(
        "the workflow's three tasks to be done on the page",
        || async {
            let rows = b
                .c()
                .find_all(Locator::Css("#tasks tbody tr[data-task]"))
                .await
                .unwrap();
            if rows.len() != 3 {
                return false;
            }
            for row in rows {
                // A refresh may replace the row while it is read: not yet, then.
                if row.attr("data-status").await.ok().flatten().as_deref() != Some("done") {
                    return false;
                }
            }
            true
        },
    )
    .await;
    assert_eq!(b.js("return window.orchTestMarker;").await, json!(42));
    let done = b.text("#board-live .count.status-done b").await;
    assert_eq!(done, "3");
    // The whole board, for the README.
    b.goto(&dash.url("/")).await;
    b.wait_for("#board-live").await;
    wait_until("the failing task to fail", || async {
        b.c()
            .find(Locator::Css("#tasks tr[data-status=failed]"))
            .await
            .is_ok()
    })
    .await;
    // Keyboard: j selects the first row, Enter opens it.
    b.c()
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("j")
        .await
        .unwrap();
    b.wait_for("#tasks tr.selected").await;
    b.screenshot("board").await;
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_task_is_approved_with_a_comment_and_a_running_one_cancelled() {
    if !chromium_available("approve") {
        return;
    }
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let ids = home.submit(
        "work",
        "name: work\ntasks:\n  - id: long\n    title: Run the long suite\n    steps:\n      - name: s\n        exec:\n          - argv: [sleep, \"30\"]\n  - id: gated\n    title: Deploy to production\n    requires_approval: true\n    body: Ships the release to every customer.\n    steps:\n      - name: s\n        exec:\n          - argv: [echo, deploying]\n",
        repo.path(),
    );
    let (long, gated) = (ids["long"], ids["gated"]);
    // A phone-sized window: the inbox is meant for one.
    let dash = Dashboard::start_on(home, 1, 390, 844).await;
    poll_until("the long task to run", UI_DEADLINE, || {
        (dash.home.task_status(long) == "running").then_some(())
    });
    dash.sign_in().await;
    let b = &dash.browser;
    b.goto(&dash.url("/inbox")).await;
    let card = format!(".item[data-task=\"{gated}\"]");
    b.wait_for(&card).await;
    b.screenshot("inbox-phone").await;
    b.type_into(
        &format!("{card} textarea[name=text]"),
        "Looks good, ship it",
    )
    .await;
    b.click(&format!("{card} button.act-approve")).await;
    b.wait_for("#flash").await;
    let flash = b.text("#flash").await;
    assert!(flash.contains(&format!("Task {gated} approved")), "{flash}");
    let task = dash.home.task(gated);
    let approvals = task_events(&task, "approve");
    assert_eq!(approvals.len(), 1, "{task:#}");
    assert_eq!(approvals[0]["reason"], "Looks good, ship it");
    assert_eq!(approvals[0]["actor"], local_user().as_str());
    // Approving again is refused, and says why.
    b.goto(&dash.url("/")).await;
    b.wait_for("#board-live").await;
    let row = format!("#tasks tr[data-task=\"{long}\"]");
    b.click(&format!("{row} button.act-cancel")).await;
    b.wait_for("#flash").await;
    let flash = b.text("#flash").await;
    assert!(flash.contains(&format!("Task {long} cancelled")), "{flash}");
    assert_eq!(dash.home.task_status(long), "cancelled");
    // The page shows it, and no action is offered for a cancelled task but retry.
    b.wait_for(&format!(
        "#tasks tr[data-task=\"{long}\"][data-status=cancelled]"
    ))
    .await;
    assert!(b
        .c()
        .find(Locator::Css(&format!("{row} button.act-cancel")))
        .await
        .is_err());
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn titles_labels_and_bodies_with_script_and_javascript_urls_render_as_inert_text() {
    if !chromium_available("xss") {
        return;
    }
    let dash = Dashboard::start(0, 1200, 800).await;
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let title = "<script>window.orchPwned=1</script><img src=x onerror=\"window.orchPwned=2\"> javascript:window.orchPwned=3";
    let yaml = format!(
        "name: hostile\ntasks:\n  - id: evil\n    title: {title:?}\n    requires_approval: true\n    labels: [\"javascript:window.orchPwned=4\", \"<b onmouseover=window.orchPwned=5>x</b>\"]\n    body: \"<script>window.orchPwned=6</script> [click](javascript:window.orchPwned=7)\"\n    steps:\n      - name: s\n        exec:\n          - argv: [echo, \"<script>window.orchPwned=8</script>\"]\n"
    );
    let ids = dash.home.submit("hostile", &yaml, repo.path());
    let id = ids["evil"];
    dash.sign_in().await;
    let b = &dash.browser;
    let pages = [
        "/".to_owned(),
        "/inbox".to_owned(),
        format!("/?label={}", "javascript%3Awindow.orchPwned%3D4"),
        "/?status=%3Cscript%3Ewindow.orchPwned%3D9%3C%2Fscript%3E".to_owned(),
    ];
    for page in &pages {
        b.goto(&dash.url(page)).await;
        b.wait_for("main").await;
        // Give anything that might run a moment (an onerror fires after the image fails).
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            b.js("return typeof window.orchPwned;").await,
            json!("undefined"),
            "{page} ran injected script"
        );
        // No link anywhere goes to a javascript: URL, and no element carries an event handler.
        let hostile = b
            .js("return Array.from(document.querySelectorAll('a[href], [onerror], [onmouseover], img, script:not([src])'))\
                 .filter(e => e.tagName === 'IMG' || e.tagName === 'SCRIPT' || e.hasAttribute('onerror') || e.hasAttribute('onmouseover') || /^\\s*javascript:/i.test(e.getAttribute('href') || '')).length;")
            .await;
        assert_eq!(hostile, json!(0), "{page}");
    }
    // The title is shown exactly, as text.
    b.goto(&dash.url("/")).await;
    b.wait_for("#board-live").await;
    let shown = b
        .text(&format!("#tasks tr[data-task=\"{id}\"] a.open"))
        .await;
    assert_eq!(shown, title);
    let label = format!("#tasks tr[data-task=\"{id}\"] a.label");
    assert_eq!(b.text(&label).await, "javascript:window.orchPwned=4");
    let href = b.attr(&label, "href").await.unwrap();
    assert!(href.starts_with("/?label="), "{href}");
    // The sign-in page's `next` cannot send the browser to a javascript: URL either.
    let form_next = {
        b.goto(&dash.url("/sign-in?next=javascript:window.orchPwned=10"))
            .await;
        b.wait_for("#board-live").await;
        b.path().await
    };
    assert_eq!(form_next, "/");
    assert_eq!(
        b.js("return typeof window.orchPwned;").await,
        json!("undefined")
    );
    dash.stop().await;
}
