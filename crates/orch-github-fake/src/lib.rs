//! A stateful fake GitHub on 127.0.0.1 for tests: the REST routes orch's forge client uses, the
//! one GraphQL query it sends, GitHub App authentication (JWTs checked against the app's public
//! key, installation tokens with a chosen lifetime), git over HTTP (`git http-backend` behind
//! basic auth that accepts only a valid token), webhooks signed like GitHub's, and failure
//! injection (primary and secondary rate limits, 5xx, slow answers) with every request counted.
//!
//! Each repository's remote is a real bare git repository, so a merge through the API really
//! moves the base branch and a pushed branch is what the pull request shows.
//!
//! ```no_run
//! # async fn demo() {
//! let fake = orch_github_fake::FakeGitHub::start().await;
//! fake.create_repo("octo/hello");
//! let token = fake.add_token("octocat");
//! let number = fake.create_issue("octo/hello", "Fix it", "the body", &["orch"]);
//! // ... point the client at fake.url() with `token` ...
//! assert_eq!(fake.request_count("GET /repos/{owner}/{repo}/issues/{number}"), 0);
//! # let _ = (token, number);
//! # }
//! ```
//!
//! The control methods are synchronous (the state sits behind a `std::sync::Mutex` never held
//! across an await), so sync e2e tests can use [`FakeGitHub::start_blocking`].

mod api;
mod app;
mod control;
pub mod git;
mod git_http;
mod graphql;
mod middleware;
mod pulls;
mod state;
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot};

pub use control::{CheckRunSpec, CommentView, IssueView, PullView, ReviewCommentView};
pub use state::{Delivery, Fault, FaultKind, SeenRequest};

/// The test App's private key (PKCS#1 PEM, 2048-bit RSA). A test-only key, published on purpose.
pub const TEST_APP_PRIVATE_KEY: &str = include_str!("../testdata/app-key.pem");
/// The public half of [`TEST_APP_PRIVATE_KEY`].
pub const TEST_APP_PUBLIC_KEY: &str = include_str!("../testdata/app-key.pub.pem");
/// Another test-only private key, for JWTs the fake must refuse.
pub const OTHER_PRIVATE_KEY: &str = include_str!("../testdata/other-key.pem");

/// What the handlers share.
pub(crate) struct Shared {
    // A std mutex: every critical section is short and synchronous, and the control methods are
    // called from sync tests too.
    state: Mutex<state::State>,
    base_url: String,
    root: PathBuf,
    webhooks: mpsc::UnboundedSender<(String, serde_json::Value)>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, state::State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a webhook delivery (sent only when a webhook URL is configured).
    pub(crate) fn emit(&self, event: &str, payload: serde_json::Value) {
        let _ = self.webhooks.send((event.to_owned(), payload));
    }
}

/// A running fake GitHub; stops when dropped.
pub struct FakeGitHub {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _root: tempfile::TempDir,
}

impl FakeGitHub {
    /// Starts the fake on an ephemeral port of 127.0.0.1, on the current tokio runtime.
    pub async fn start() -> FakeGitHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the fake GitHub");
        let (fake, server) = FakeGitHub::prepare(listener);
        tokio::spawn(server);
        fake
    }

    /// Starts the fake on its own thread and runtime, for tests that are not async.
    pub fn start_blocking() -> FakeGitHub {
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fake-github".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("build the fake GitHub's runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind 127.0.0.1:0 for the fake GitHub");
                    let (fake, server) = FakeGitHub::prepare(listener);
                    sender.send(fake).expect("hand the fake to the test");
                    server.await;
                });
            })
            .expect("start the fake GitHub's thread");
        let mut fake = receiver.recv().expect("the fake GitHub started");
        fake.thread = Some(thread);
        fake
    }

    fn prepare(
        listener: tokio::net::TcpListener,
    ) -> (FakeGitHub, impl std::future::Future<Output = ()>) {
        let addr = listener.local_addr().expect("the fake's address");
        let root = tempfile::Builder::new()
            .prefix("fake-github-")
            .tempdir()
            .expect("create the fake GitHub's directory");
        let (webhook_sender, webhook_receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(state::State::default()),
            base_url: format!("http://{addr}"),
            root: root.path().to_owned(),
            webhooks: webhook_sender,
        });
        let (shutdown, shutdown_receiver) = oneshot::channel::<()>();
        let router = api::router(shared.clone());
        let deliverer = webhooks::deliver(shared.clone(), webhook_receiver);
        let server = async move {
            let deliveries = tokio::spawn(deliverer);
            let stop = tokio_util::sync::CancellationToken::new();
            let stopped = stop.clone();
            let serve = axum::serve(listener, router)
                .with_graceful_shutdown(stop.clone().cancelled_owned());
            tokio::select! {
                _ = serve => {}
                // Requests still open (a delayed answer) get a few seconds, then are dropped.
                _ = async move {
                    let _ = shutdown_receiver.await;
                    stopped.cancel();
                    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                } => {}
            }
            deliveries.abort();
        };
        let fake = FakeGitHub {
            shared,
            addr,
            shutdown: Some(shutdown),
            thread: None,
            _root: root,
        };
        (fake, server)
    }

    /// The API base URL (`http://127.0.0.1:PORT`), the `api_base` of the client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the bare repositories live.
    pub fn root(&self) -> PathBuf {
        self.shared.root.clone()
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
