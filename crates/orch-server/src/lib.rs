//! The orch daemon (`orch serve`): one scheduler loop and N embedded workers over one store.
//!
//! Architecture invariant: every long-running loop here takes the shutdown token; whoever spawns
//! a task keeps its handle and awaits it.

pub mod api;
mod cron;
pub mod dashboard;
pub mod forge;
pub mod forge_conflict;
pub mod forge_mentions;
pub mod forge_outbox;
pub mod forge_plan;
pub mod forge_poll;
pub mod forge_writer;
pub mod instance;
pub mod landing;
pub mod limits;
pub mod live_sessions;
pub mod retention;
pub mod scheduler;
pub mod submit_check;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_store::{Op, Store};
use orch_worker::{Coordinator, WorkerSettings};
use tokio_util::sync::CancellationToken;

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The orch home.
    pub home: PathBuf,
    /// Embedded workers (0: none, an API-only daemon).
    pub workers: usize,
    /// Lease length for embedded workers.
    pub lease: Duration,
    /// How long running steps may take to finish after a shutdown request.
    pub grace: Duration,
    /// Time between scheduler passes.
    pub tick: Duration,
    /// The database is this home's own (its SQLite file): no other daemon uses it, so at start
    /// the runs of embedded workers named in the old format (`embedded-N`, before instance ids)
    /// are released too. False for a shared database.
    pub own_database: bool,
    /// Stop by itself once nothing is left to run (for `orch demo` and scripts).
    pub exit_when_idle: bool,
    /// Worktrees of finished tasks older than this are removed (hourly).
    pub retention: Duration,
    /// Run bundles (`<home>/runs/<task>`) of finished tasks older than this are removed
    /// (hourly; `needs_review` tasks keep theirs).
    pub bundle_retention: Duration,
    /// Serve the HTTP API on this address (port 0: any free port; the bound address is written
    /// to `<home>/serve.addr`). `None`: no API (`orch demo`).
    pub listen: Option<SocketAddr>,
    /// Allow `listen` on a non-loopback address without `tls` (plaintext HTTP; only behind TLS
    /// termination).
    pub allow_non_loopback: bool,
    /// Serve HTTPS with this certificate and key; a non-loopback `listen` needs no
    /// `allow_non_loopback` then.
    pub tls: Option<TlsFiles>,
    /// The largest request body the API accepts, in bytes.
    pub body_limit: usize,
    /// The most bytes one remote run's bundle (streamed logs and the uploaded bundle) may take
    /// in the home; beyond it the worker is answered 413 `bundle_too_large`.
    pub max_bundle_bytes: u64,
    /// Requests per second each client may send on average (0: no limit); `/health` is exempt.
    pub rate_limit_per_sec: u32,
    /// Requests a client may send at once before the average rate applies.
    pub rate_limit_burst: u32,
    /// Origins browsers may call the API from (`*`: any); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// The shared secret GitHub signs webhook deliveries with; `None`: `/v1/webhooks/github`
    /// answers 404. [`ServeOptions::new`] reads it from [`GITHUB_WEBHOOK_SECRET_ENV`].
    pub github_webhook_secret: Option<String>,
    /// Comments mentioning `@<handle>` on GitHub create tasks (default `orch`).
    pub github_handle: String,
    /// The project (directory) tasks from GitHub belong to; `None`: they are refused with 422.
    pub github_project: Option<PathBuf>,
    /// The key for secrets kept at rest (`orch_store::secret_box`); the CLI loads it from
    /// `ORCH_SECRET_KEY` or `<home>/secret.key` at start. Info-request answers are sealed with it.
    pub secret_box: Option<orch_store::secret_box::SecretBox>,
}

/// The API's certificate chain and private key, PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain (the server's certificate first).
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The environment variable holding the GitHub webhook secret. [`ServeOptions::new`] is the one
/// place that reads it (orch-server has no config module; the CLI's flags may override the field).
pub const GITHUB_WEBHOOK_SECRET_ENV: &str = "ORCH_GITHUB_WEBHOOK_SECRET";

impl ServeOptions {
    /// Defaults for `home`, with the GitHub webhook secret from [`GITHUB_WEBHOOK_SECRET_ENV`]
    /// (unset or empty: none).
    pub fn new(home: impl Into<PathBuf>) -> Self {
        ServeOptions {
            home: home.into(),
            workers: 2,
            lease: Duration::from_secs(30),
            grace: Duration::from_secs(30),
            tick: Duration::from_millis(100),
            own_database: true,
            exit_when_idle: false,
            retention: Duration::from_secs(7 * 24 * 3600),
            bundle_retention: Duration::from_secs(30 * 24 * 3600),
            listen: None,
            allow_non_loopback: false,
            tls: None,
            body_limit: 1024 * 1024,
            max_bundle_bytes: 512 * 1024 * 1024,
            rate_limit_per_sec: 50,
            rate_limit_burst: 100,
            cors_origins: Vec::new(),
            github_webhook_secret: std::env::var(GITHUB_WEBHOOK_SECRET_ENV)
                .ok()
                .filter(|secret| !secret.is_empty()),
            github_handle: "orch".to_owned(),
            secret_box: None,
            github_project: None,
        }
    }
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another `orch serve` holds this home.
    #[error(
        "another `orch serve` is already running for {0}; stop it first (or use another --home)"
    )]
    AlreadyRunning(PathBuf),
    /// A file in the home could not be used.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] orch_store::StoreError),
    /// `[concurrency]` or `[budgets]` of config.toml cannot be used.
    #[error("claim limits: {0}")]
    Limits(String),
    /// `listen` is not a loopback address and `allow_non_loopback` is not set.
    #[error(
        "refusing to serve plaintext HTTP on the non-loopback address {0}: the admin token would \
         cross the network unencrypted; listen on 127.0.0.1, serve HTTPS with --tls-cert and \
         --tls-key, or put a TLS terminator in front and pass --insecure-listen"
    )]
    NonLoopback(SocketAddr),
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The token file exists but is readable by others.
    #[error(
        "{path} has mode {mode:o}, so other users can read the admin token; run \
         `chmod 600 {path}` (or delete it to get a new token) and start again"
    )]
    TokenExposed {
        /// The token file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

/// The name prefix of every daemon's embedded workers: `embedded-<instance>-N`, with the
/// home's [`instance::instance_id`]. Only one daemon runs per home (the lock), so at start-up
/// every active run of `embedded-<instance>-` belonged to this home's daemon that is gone.
/// Remote workers may not use the prefix.
pub const EMBEDDED_PREFIX: &str = "embedded";

/// Take the home's daemon lock; held until the returned file is dropped (or the process dies,
/// when the kernel releases it, so a `kill -9` never leaves a stale lock behind).
pub fn lock_home(home: &Path) -> Result<File, ServeError> {
    std::fs::create_dir_all(home).map_err(|source| ServeError::Io {
        context: format!("create {}", home.display()),
        source,
    })?;
    let path = home.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ServeError::Io {
            context: format!("open {}", path.display()),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServeError::AlreadyRunning(home.to_owned())),
        Err(std::fs::TryLockError::Error(source)) => Err(ServeError::Io {
            context: format!("lock {}", path.display()),
            source,
        }),
    }
}

/// Run the daemon until `shutdown` fires (or, with `exit_when_idle`, until nothing is left).
pub async fn serve(
    store: Store,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    if let Some(addr) = options.listen {
        if !addr.ip().is_loopback() && !options.allow_non_loopback && options.tls.is_none() {
            return Err(ServeError::NonLoopback(addr));
        }
    }
    // The home is private to its user whatever made it (the `orch` binary also sets umask 077,
    // so every file it creates is 0600 and every directory 0700).
    match orch_store::home::secure(&options.home) {
        Ok(Some(mode)) => tracing::warn!(
            home = %options.home.display(),
            "the home could be read by other users (mode {mode:o}); it is 0700 now"
        ),
        Ok(None) => {}
        Err(source) => {
            return Err(ServeError::Io {
                context: format!("make {} private (mode 0700)", options.home.display()),
                source,
            })
        }
    }
    let _lock = lock_home(&options.home)?;
    store.set_claim_limits(limits::load(&options.home).map_err(ServeError::Limits)?);
    // A daemon killed with SIGKILL leaves its commands running; stop them before their runs are
    // handed out again.
    for group in orch_worker::exec::kill_orphaned_groups(&options.home.join("processes")) {
        tracing::warn!(group, "killed the commands of a run whose daemon died");
    }
    let instance = instance::instance_id(&options.home)?;
    let own_prefix = instance::embedded_prefix(&instance);
    tracing::info!(instance = %instance, "this daemon's embedded workers are {own_prefix}-N");
    // Only this home's runs: another live daemon on the same database keeps its own.
    let mut released = store
        .release_owner(&format!("{own_prefix}-"), Op::now("serve"))
        .await?;
    if options.own_database {
        // Runs of the old worker names (`embedded-<digit>...`); instance ids are letters, so
        // these prefixes match no new-format name.
        for digit in 0..=9 {
            released.extend(
                store
                    .release_owner(&format!("{EMBEDDED_PREFIX}-{digit}"), Op::now("serve"))
                    .await?,
            );
        }
    }
    for r in &released {
        tracing::info!(task = %r.task, run = %r.run, status = %r.status, "run of a previous daemon released");
    }
    // What the registry missed (a command spawned but not yet registered when the daemon died)
    // still carries its run's id; no worker runs yet, so nothing is handed out before this.
    let runs: Vec<i64> = released.iter().map(|r| r.run.0).collect();
    for group in orch_worker::exec::kill_processes_of_runs(&options.home.join("scratch"), &runs) {
        tracing::warn!(
            group,
            "killed the unregistered commands of a run whose daemon died"
        );
    }
    // The API stops with `shutdown`, or when the workers stop by themselves (`exit_when_idle`).
    let api_stop = shutdown.child_token();
    let metrics = std::sync::Arc::new(api::ops::Metrics::new());
    // What the dashboard shows of the workers; the embedded workers' agent pauses are its.
    let fleet = std::sync::Arc::new(dashboard::fleet::Fleet::default());
    let api = match options.listen {
        Some(addr) => Some(
            api::start(
                store.clone(),
                &options,
                addr,
                metrics.clone(),
                fleet.clone(),
                api_stop.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let limits_watch = tokio::spawn(limits::watch(
        store.clone(),
        options.home.clone(),
        shutdown.child_token(),
    ));
    let coordinator = Coordinator::Local(store.clone());
    let mut settings = WorkerSettings::new(&own_prefix, &options.home);
    settings.secret_box = options.secret_box.clone();
    settings.lease = options.lease;
    settings.heartbeat_every = options.lease / 3;
    settings.agent_pauses = fleet.agent_pauses.clone();
    let workers_stop = shutdown.child_token();
    let scheduler = tokio::spawn(
        scheduler::Scheduler {
            store: store.clone(),
            options: options.clone(),
            instance,
            metrics,
            leadership: scheduler::Leadership::default(),
            shutdown: shutdown.clone(),
            workers_stop: workers_stop.clone(),
        }
        .run(),
    );
    if options.workers == 0 {
        // An API-only daemon: nothing runs here until remote workers come.
        workers_stop.cancelled().await;
    } else {
        orch_worker::run_workers(
            coordinator,
            settings,
            options.workers,
            workers_stop.clone(),
            options.grace,
        )
        .await;
    }
    workers_stop.cancel();
    api_stop.cancel();
    limits_watch.abort();
    if let Err(e) = scheduler.await {
        tracing::error!("the scheduler ended abnormally: {e}");
    }
    if let Some(api) = api {
        if let Err(e) = api.await {
            tracing::error!("the HTTP API ended abnormally: {e}");
        }
    }
    Ok(())
}
