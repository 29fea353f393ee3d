//! `orch serve`, `orch demo` and `orch task logs`: the commands that run or watch work.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use orch_core::{EventKind, Status, TaskId};
use orch_server::{serve, ServeOptions};
use orch_store::{Store, TaskFilter};
use tokio_util::sync::CancellationToken;

use crate::cli::{DemoArgs, GcArgs, ServeArgs, TaskLogsArgs, WorkerArgs};
use crate::commands::{now, open_store};
use crate::config::Settings;
use crate::output;
use crate::UserError;

/// Fire `shutdown` on SIGTERM or SIGINT; a second signal exits at once (leases then expire and
/// the runs are recovered, so nothing is lost either way).
fn watch_signals(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            seen += 1;
            if seen == 1 {
                eprintln!("orch: shutting down: no new runs; running steps may finish (signal again to exit now)");
                shutdown.cancel();
            } else {
                eprintln!(
                    "orch: exiting now; unfinished runs are recovered when their leases expire"
                );
                std::process::exit(130);
            }
        }
    });
    Ok(())
}

pub async fn serve_command(settings: &Settings, args: ServeArgs) -> anyhow::Result<()> {
    // A broken config.toml stops the daemon now, not each task later.
    orch_worker::project::ProjectConfig::load_global(&settings.home)
        .map_err(|e| UserError::new(e.to_string()))?;
    let store = open_store(settings).await?;
    let mut options = ServeOptions::new(&settings.home);
    options.workers = args.workers;
    options.lease = args.lease;
    options.grace = args.grace;
    options.exit_when_idle = args.exit_when_idle;
    options.own_database = settings.database_path() == Some(settings.home.join("orch.db"));
    options.bundle_retention = args.bundle_retention;
    options.listen = Some(args.listen);
    options.allow_non_loopback = args.insecure_listen;
    options.tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(orch_server::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    options.rate_limit_per_sec = args.rate_limit;
    options.rate_limit_burst = args.rate_burst;
    options.cors_origins = args.cors_origin.clone();
    options.max_bundle_bytes = args.max_bundle_size;
    configure_github(&mut options, &args)?;
    // Loaded (and created) at start, so a key others can read stops the daemon now.
    options.secret_box = Some(settings.secret_box()?);
    let shutdown = CancellationToken::new();
    watch_signals(shutdown.clone())?;
    eprintln!(
        "orch serve: home {}, {} worker(s), lease {}",
        settings.home.display(),
        options.workers,
        humantime::format_duration(options.lease),
    );
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // The file's time is taken here, before the daemon can bind: taken in the spawned task,
    // it could already be the new file's, which then never looks new.
    let addr_file = settings.home.join("serve.addr");
    let before = written(&addr_file);
    let announce = tokio::spawn(announce_bound_address(
        addr_file,
        before,
        scheme,
        store.clone(),
    ));
    let served = serve(store.clone(), options, shutdown).await;
    announce.abort();
    served.map_err(|e| match e {
        orch_server::ServeError::AlreadyRunning(_)
        | orch_server::ServeError::NonLoopback(_)
        | orch_server::ServeError::Tls(_)
        | orch_server::ServeError::TokenExposed { .. } => {
            anyhow::Error::from(UserError::new(e.to_string()))
        }
        other => other.into(),
    })?;
    store.close().await;
    eprintln!("orch serve: stopped");
    Ok(())
}

/// Say where the API listens once it does: the daemon writes the bound address (the real port
/// for `--listen ...:0`) to `serve.addr` right after binding, so a file written since start-up
/// is the proof that binding succeeded. (Compared with the file's time before start-up, not the
/// clock: file times come from the kernel's coarser clock.)
async fn announce_bound_address(
    file: PathBuf,
    before: Option<std::time::SystemTime>,
    scheme: &'static str,
    store: Store,
) {
    loop {
        let now = written(&file);
        if now.is_some() && now != before {
            if let Ok(text) = std::fs::read_to_string(&file) {
                let addr = text.trim();
                if !addr.is_empty() {
                    eprintln!("orch serve: API listening on {scheme}://{addr}");
                    announce_dashboard(&store, scheme, addr).await;
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// When `file` was last written, if it exists.
fn written(file: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}

/// Print a one-time sign-in link into the dashboard for the local user.
async fn announce_dashboard(store: &Store, scheme: &str, addr: &str) {
    let Ok(addr) = addr.parse() else { return };
    let base = crate::dashboard::reachable_base(scheme, addr);
    match crate::dashboard::sign_in_link(store, &base).await {
        Ok(link) => eprintln!(
            "orch serve: dashboard at {base}/ (one-time sign-in link, valid {}: {link} ; \
             `orch dashboard` makes another)",
            humantime::format_duration(crate::dashboard::LINK_TTL)
        ),
        Err(e) => eprintln!("orch serve: dashboard at {base}/ (no sign-in link: {e:#})"),
    }
}

/// The GitHub webhook's settings from the flags (the secret from a file, else from
/// `ORCH_GITHUB_WEBHOOK_SECRET`, which `ServeOptions::new` read). A secret without a project
/// would refuse every delivery that creates a task, so it stops start-up instead.
fn configure_github(options: &mut ServeOptions, args: &ServeArgs) -> anyhow::Result<()> {
    if let Some(file) = &args.github_webhook_secret_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            UserError::new(format!(
                "--github-webhook-secret-file {}: {e}",
                file.display()
            ))
        })?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(UserError::new(format!(
                "--github-webhook-secret-file {}: the file is empty; put the webhook's secret in it",
                file.display()
            ))
            .into());
        }
        options.github_webhook_secret = Some(secret.to_owned());
    }
    let handle = args.github_handle.trim().trim_start_matches('@');
    if handle.is_empty() || handle.contains(char::is_whitespace) {
        return Err(UserError::new(format!(
            "--github-handle `{}`: give a GitHub user or app name, e.g. orch",
            args.github_handle
        ))
        .into());
    }
    options.github_handle = handle.to_owned();
    if let Some(dir) = &args.github_project {
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| UserError::new(format!("--github-project {}: {e}", dir.display())))?;
        if !dir.is_dir() {
            return Err(UserError::new(format!(
                "--github-project {}: not a directory",
                dir.display()
            ))
            .into());
        }
        options.github_project = Some(dir);
    }
    if options.github_webhook_secret.is_some() && options.github_project.is_none() {
        return Err(UserError::new(
            "a GitHub webhook secret is set (--github-webhook-secret-file or \
             ORCH_GITHUB_WEBHOOK_SECRET) but no project for its tasks; add --github-project DIR",
        )
        .into());
    }
    Ok(())
}

pub async fn worker_command(
    settings: &Settings,
    remote: &crate::client::Remote,
    args: WorkerArgs,
) -> anyhow::Result<()> {
    let ca_pem = remote.ca_pem()?;
    let token = crate::config::token_from(remote.token_file.as_deref(), "ORCH_WORKER_TOKEN")
        .map_err(|e| UserError::new(format!("{e:#}")))?
        .ok_or_else(|| {
            UserError::new(
                "no worker token: pass --token-file PATH (a copy of the file `worker-token` in \
                 the daemon's home, mode 0600) or set ORCH_WORKER_TOKEN",
            )
        })?;
    let http = orch_worker::HttpCoordinator::new(&args.server, &token.value, ca_pem.as_deref())
        .map_err(|e| UserError::new(format!("--server: {e}")))?
        .with_checkouts(args.projects.into_iter().collect());
    if args.name.trim().is_empty() {
        return Err(UserError::new("--name: give the worker a name").into());
    }
    std::fs::create_dir_all(&settings.home)
        .with_context(|| format!("create {}", settings.home.display()))?;
    // One process per home: its process registry and worktrees are this worker's alone. The
    // lock is the daemon's (`serve.lock`), so a worker never shares a home with `orch serve`
    // either; the kernel releases it when the process dies, however it dies.
    let _home_lock = lock_worker_home(&settings.home)
        .await
        .map_err(|e| match e {
            orch_server::ServeError::AlreadyRunning(home) => {
                anyhow::Error::from(UserError::new(format!(
                "--home {}: another `orch worker` or `orch serve` is using this home (waited 10 s for it); give each \
             worker its own --home",
                home.display()
            )))
            }
            other => anyhow::Error::from(other),
        })?;
    // A previous incarnation killed with SIGKILL leaves its steps running, in worktrees the
    // next runs of the same tasks use: stop them before claiming anything.
    for group in orch_worker::task_lock::stop_previous_incarnation(&settings.home) {
        tracing::warn!(
            group,
            "stopped the commands of a previous worker in this home"
        );
    }
    let mut worker = orch_worker::WorkerSettings::new(args.name.trim(), &settings.home);
    // The worker token is redacted from every run's bundle like a secret value.
    worker.own_secrets.push(token.value.trim().to_owned());
    worker.lease = args.lease;
    worker.heartbeat_every = worker.lease / 3;
    let slots = args.slots;
    let shutdown = CancellationToken::new();
    watch_signals(shutdown.clone())?;
    eprintln!(
        "orch worker: {} slot(s) named {}-N for {}, lease {}, bundles in {}",
        slots,
        worker.name,
        args.server,
        humantime::format_duration(worker.lease),
        settings.home.join("runs").display()
    );
    let ended = orch_worker::run_workers_checked(
        orch_worker::Coordinator::Http(http),
        worker,
        slots,
        shutdown,
        args.grace,
    )
    .await;
    if let Err(e) = ended {
        return Err(UserError::new(format!(
            "orch worker: stopped: the daemon at {} refused the worker token from {} ({e}); \
             give the worker a copy of the file `worker-token` in the daemon's home",
            args.server, token.source
        ))
        .into());
    }
    eprintln!("orch worker: stopped");
    Ok(())
}

const DEMO_WORKFLOW: &str = include_str!("demo.yml");

/// Git for the demo repository, through the same hardened runner as every git orch runs.
fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec![
        "-c",
        "user.name=orch demo",
        "-c",
        "user.email=demo@localhost",
        "-c",
        "init.defaultBranch=main",
    ];
    full.extend_from_slice(args);
    let out = orch_worker::workspace::git_command(
        &orch_worker::workspace::GitScope::Discover { dir },
        &full,
    )
    .output_blocking()
    .context("run git (is it installed?)")?;
    if !out.status.success() {
        anyhow::bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub async fn demo(
    home_flag: Option<&Path>,
    database_flag: Option<&str>,
    args: DemoArgs,
) -> anyhow::Result<bool> {
    // A throwaway directory is removed at the end (on every path out, errors too) unless
    // --keep; a --dir the user named is theirs and stays.
    let (root, throwaway) = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            (crate::config::absolute(dir)?, None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("orch-demo-")
                .tempdir()
                .context("create a temporary directory")?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).with_context(|| format!("create {}", repo.display()))?;
    std::fs::write(repo.join("greeting.txt"), "Hello from orch.\n")
        .context("write the demo repository")?;
    std::fs::write(
        repo.join("README.md"),
        "# orch demo\n\nA throwaway repository made by `orch demo`.\n",
    )
    .context("write the demo repository")?;
    std::fs::write(repo.join("demo.yml"), DEMO_WORKFLOW).context("write the demo workflow")?;
    git(&repo, &["init", "-q"])?;
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "demo: initial commit"])?;
    let home = match home_flag {
        Some(home) => home.to_owned(),
        None => root.join("home"),
    };
    let settings = Settings::load(Some(&home), database_flag)?;
    let store = open_store(&settings).await?;
    let project = orch_app::ProjectDir::resolve(&repo.to_string_lossy(), "demo repository")?;
    let submitted = orch_app::App::new(store.clone())
        .submit_workflow(
            &project,
            orch_app::WorkflowText {
                file: "demo.yml",
                text: DEMO_WORKFLOW,
            },
            "demo",
        )
        .await
        .context("submit the built-in demo workflow")?;
    let ids: Vec<_> = submitted.tasks.iter().map(|t| t.id).collect();
    eprintln!(
        "orch demo: repository {}, home {}",
        repo.display(),
        settings.home.display()
    );

    let shutdown = CancellationToken::new();
    watch_signals(shutdown.clone())?;
    let mut options = ServeOptions::new(&settings.home);
    options.workers = args.workers.max(1);
    options.lease = Duration::from_secs(10);
    options.grace = Duration::from_secs(5);
    options.exit_when_idle = true;
    let daemon = tokio::spawn(serve(store.clone(), options, shutdown.clone()));
    show_progress(&store, &ids, &daemon).await;
    daemon.await.context("the demo's daemon task")??;

    let tasks = store
        .tasks(&TaskFilter {
            workflow: store.task(ids[0]).await?.workflow,
            ..TaskFilter::default()
        })
        .await?;
    let mut table = output::table(&["task", "key", "status", "duration", "artifacts"]);
    let mut all_done = true;
    for task in &tasks {
        all_done &= task.status == Status::Done;
        let events = store.events(task.id).await?;
        let start = events
            .iter()
            .find(|e| e.kind == EventKind::Claim)
            .map(|e| e.at.0);
        let end = events.last().map(|e| e.at.0);
        let duration = match (start, end) {
            (Some(s), Some(e)) => format!("{:.1}s", (e - s) as f64 / 1000.0),
            _ => "-".into(),
        };
        let bundle = settings
            .home
            .join("runs")
            .join(task.id.to_string())
            .join(task.run_count.to_string());
        table.add_row(vec![
            task.id.to_string(),
            task.spec.key.clone().unwrap_or_default(),
            task.status.to_string(),
            duration,
            bundle.display().to_string(),
        ]);
    }
    println!("{table}");
    store.close().await;
    match throwaway {
        Some(temp) if !args.keep => {
            let shown = temp.path().display().to_string();
            temp.close()
                .with_context(|| format!("remove the demo's directory {shown}"))?;
            println!(
                "\nremoved the demo's directory {shown}; `orch demo --keep` keeps it to look around"
            );
        }
        kept => {
            // `keep` hands the directory over, so dropping it does not remove it.
            let _ = kept.map(tempfile::TempDir::keep);
            println!(
                "\nlogs: orch --home {} task logs <task>    details: orch --home {} task get <task>",
                settings.home.display(),
                settings.home.display()
            );
        }
    }
    Ok(all_done)
}

/// Live progress while the daemon runs: bars on a terminal, one line per change otherwise.
async fn show_progress(
    store: &Store,
    ids: &[TaskId],
    daemon: &tokio::task::JoinHandle<Result<(), orch_server::ServeError>>,
) {
    let tty = std::io::stderr().is_terminal();
    let multi = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template("{spinner} {prefix:<28} {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
    let mut bars = BTreeMap::new();
    let mut last: BTreeMap<TaskId, Status> = BTreeMap::new();
    for id in ids {
        if tty {
            let bar = multi.add(indicatif::ProgressBar::new_spinner());
            bar.set_style(style.clone());
            if let Ok(task) = store.task(*id).await {
                bar.set_prefix(format!("{} {}", task.id, task.spec.key.unwrap_or_default()));
            }
            bars.insert(*id, bar);
        }
    }
    loop {
        for id in ids {
            let Ok(task) = store.task(*id).await else {
                continue;
            };
            if last.get(id) != Some(&task.status) {
                last.insert(*id, task.status);
                if let Some(bar) = bars.get(id) {
                    bar.set_message(format!(
                        "{} (attempt {})",
                        task.status,
                        task.run_count.max(1)
                    ));
                    if task.status.is_finished() {
                        bar.finish();
                    }
                } else {
                    eprintln!(
                        "task {} {}: {}",
                        task.id,
                        task.spec.key.unwrap_or_default(),
                        task.status
                    );
                }
            }
            if let Some(bar) = bars.get(id) {
                bar.tick();
            }
        }
        if daemon.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for bar in bars.values() {
        bar.finish();
    }
}

/// The run directory of a task's attempt (the latest by default).
fn run_dir(home: &Path, task: TaskId, attempt: Option<u32>) -> anyhow::Result<Option<PathBuf>> {
    let task_dir = home.join("runs").join(task.to_string());
    if let Some(attempt) = attempt {
        let dir = task_dir.join(attempt.to_string());
        return Ok(dir.is_dir().then_some(dir));
    }
    let Ok(entries) = std::fs::read_dir(&task_dir) else {
        return Ok(None);
    };
    let latest = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .max();
    Ok(latest.map(|n| task_dir.join(n.to_string())))
}

/// Every log file of a run, in a stable order (see [`orch_worker::bundle::run_log_files`]).
fn log_files(dir: &Path) -> Vec<PathBuf> {
    orch_worker::bundle::run_log_files(dir)
}

pub async fn task_logs(settings: &Settings, args: TaskLogsArgs) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let id = TaskId(args.id);
    store.task(id).await?;
    let mut offsets: BTreeMap<PathBuf, u64> = BTreeMap::new();
    let mut current: Option<PathBuf> = None;
    let mut stdout = std::io::stdout().lock();
    loop {
        let dir = run_dir(&settings.home, id, args.attempt)?;
        let mut printed = false;
        if let Some(dir) = &dir {
            for file in log_files(dir) {
                let seen = offsets.get(&file).copied().unwrap_or(0);
                let Ok(mut handle) = std::fs::File::open(&file) else {
                    continue;
                };
                let len = handle.metadata().map(|m| m.len()).unwrap_or(0);
                if len <= seen {
                    continue;
                }
                handle
                    .seek(SeekFrom::Start(seen))
                    .context("read a log file")?;
                let mut bytes = Vec::new();
                handle
                    .take(len - seen)
                    .read_to_end(&mut bytes)
                    .context("read a log file")?;
                if current.as_ref() != Some(&file) {
                    let name = file
                        .strip_prefix(dir)
                        .unwrap_or(&file)
                        .display()
                        .to_string();
                    writeln!(stdout, "==> {name} <==")?;
                    current = Some(file.clone());
                }
                stdout.write_all(&bytes)?;
                if !bytes.ends_with(b"\n") {
                    writeln!(stdout)?;
                }
                offsets.insert(file, len);
                printed = true;
            }
        }
        stdout.flush()?;
        if !args.follow {
            if dir.is_none() {
                let task = store.task(id).await?;
                return Err(UserError::new(format!(
                    "task {id} has no runs yet (it is {}); use --follow to wait for its output",
                    task.status
                ))
                .into());
            }
            return Ok(());
        }
        let task = store.task(id).await?;
        let live = matches!(
            task.status,
            Status::Running
                | Status::Queued
                | Status::Waiting
                | Status::RetryWait
                | Status::AwaitingApproval
                | Status::AwaitingInput
        );
        if !live && !printed && dir.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn gc(settings: &Settings, args: GcArgs) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let spinner = crate::commands::progress_spinner("removing old worktrees and bundles".into());
    let report = orch_server::retention::collect(
        &store,
        &settings.home,
        args.older_than,
        now(),
        args.dry_run,
    )
    .await?;
    let bundles = orch_server::retention::collect_bundles(
        &store,
        &settings.home,
        args.bundles_older_than,
        now(),
        args.dry_run,
    )
    .await?;
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    if args.json {
        let removed: Vec<_> = report
            .removed
            .iter()
            .map(|(task, path, why)| serde_json::json!({ "task": task.0, "path": path, "reason": why }))
            .collect();
        let bundles_removed: Vec<_> = bundles
            .removed
            .iter()
            .map(|(task, path, why)| serde_json::json!({ "task": task.0, "path": path, "reason": why }))
            .collect();
        output::print_json(&serde_json::json!({
            "dry_run": args.dry_run, "removed": removed, "kept": report.kept,
            "bundles_removed": bundles_removed, "bundles_kept": bundles.kept,
        }))?;
    } else {
        let (verb, summary) = if args.dry_run {
            ("would remove", "would be removed")
        } else {
            ("removed", "removed")
        };
        for (task, path, why) in report.removed.iter().chain(&bundles.removed) {
            println!("task {task}: {verb} {} ({why})", path.display());
        }
        println!(
            "{} workspace(s) {summary}, {} kept; run bundles of {} task(s) {summary}, {} kept",
            report.removed.len(),
            report.kept,
            bundles.removed.len(),
            bundles.kept
        );
    }
    Ok(())
}

/// How long a starting worker waits for its home's lock: a predecessor just killed (a restart
/// by a service manager) may hold it for a moment while it dies.
const HOME_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The home's lock, waited for up to [`HOME_LOCK_WAIT`] while another process holds it.
async fn lock_worker_home(
    home: &std::path::Path,
) -> Result<std::fs::File, orch_server::ServeError> {
    let deadline = std::time::Instant::now() + HOME_LOCK_WAIT;
    loop {
        match orch_server::lock_home(home) {
            Err(orch_server::ServeError::AlreadyRunning(_))
                if std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}
