//! The `orch` binary: parses arguments, runs one command, maps errors to exit codes
//! (0 ok, 1 the operation failed, 2 usage or input error).

mod admin;
mod agents;
mod cli;
mod client;
mod commands;
mod completions;
mod config;
mod configure;
mod daemon;
mod dashboard;
mod debug;
mod errors;
mod forge;
mod info_requests;
mod jobs;
mod land;
mod listing;
mod output;
mod project;
mod route;
mod service;
mod stream;
mod task_tree;
mod usage;
mod wait;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, DebugCommand};

/// An error in what the user gave us (a file, a flag, an id): exit code 2.
#[derive(Debug)]
pub struct UserError(String);

impl UserError {
    pub fn new(message: impl Into<String>) -> Self {
        UserError(message.into())
    }
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// `orch task list | head` must end quietly like any Unix tool when the reader goes away. Rust
/// ignores SIGPIPE, so `println!` panics on the broken pipe instead; this turns exactly that
/// panic into the conventional silent exit (128 + SIGPIPE) without any unsafe code.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    // Every file orch creates (database and its WAL, tokens, key, config, bundles, logs,
    // `serve.addr`) is 0600 and every directory 0700, for every command, serve and worker alike;
    // the home itself is made 0700 when it is used (`config::Settings::load`). Steps inherit it,
    // so worktree files are private too: the user can still read them, others cannot.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    listing::set_color(cli.color);
    let filter = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORCH_LOG")
                .unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        // No escape codes in logs that go to a file or pipe (or with NO_COLOR, --color never).
        .with_ansi(listing::stderr_color())
        .init();
    // The daemons (`serve`, `worker`, `demo`) run on the multi-threaded runtime: their
    // scheduler, API and workers must not wait on each other. One-shot commands need one thread.
    let daemon = matches!(
        cli.command,
        Command::Serve(_) | Command::Worker(_) | Command::Demo(_)
    );
    let mut builder = if daemon {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {}", errors::render(&err));
            ExitCode::from(exit_code(&err))
        }
    }
}

fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<UserError>().is_some() {
            return 2;
        }
        if let Some(app) = cause.downcast_ref::<orch_app::AppError>() {
            return match app {
                orch_app::AppError::Store(store) => store_exit_code(store),
                orch_app::AppError::Invalid(_)
                | orch_app::AppError::Workflow(_)
                | orch_app::AppError::NotLive(_) => 2,
                orch_app::AppError::Session(_) => 1,
            };
        }
        if let Some(store) = cause.downcast_ref::<orch_store::StoreError>() {
            return store_exit_code(store);
        }
    }
    1
}

fn store_exit_code(store: &orch_store::StoreError) -> u8 {
    match store {
        orch_store::StoreError::TaskNotFound(_)
        | orch_store::StoreError::RunNotFound(_)
        | orch_store::StoreError::Invalid { .. } => 2,
        _ => 1,
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let home = cli.home.as_deref();
    let database = cli.database.as_deref();
    let settings = || config::Settings::load(home, database);
    if cli.token.is_some() {
        return Err(UserError::new(
            "--token: a token on the command line is visible to every local user (`ps`, \
             /proc/PID/cmdline); write it to a file only you can read and pass --token-file PATH, \
             or set ORCH_TOKEN (ORCH_WORKER_TOKEN for `orch worker`)",
        )
        .into());
    }
    let remote = client::Remote {
        server: cli.server,
        token_file: cli.token_file,
        ca_cert: cli.ca_cert,
    };
    match cli.command {
        Command::Version(args) => commands::version(args)?,
        Command::Schema(args) => commands::schema(args)?,
        Command::Ask(args) => return info_requests::ask(args),
        Command::Demo(args) => return daemon::demo(home, database, args).await,
        Command::Init(args) => commands::init(&settings()?, args).await?,
        Command::Serve(args) => daemon::serve_command(&settings()?, args).await?,
        Command::Worker(args) => daemon::worker_command(&settings()?, &remote, args).await?,
        Command::Task(command) => commands::task(&settings()?, &remote, command).await?,
        Command::Run(args) => return commands::run_workflow(&settings()?, &remote, args).await,
        Command::Status(args) => commands::status(&settings()?, &remote, args).await?,
        Command::Usage(args) => usage::usage(&settings()?, &remote, args).await?,
        Command::Stream(args) => stream::stream(&settings()?, args).await?,
        Command::Doctor(args) => return commands::doctor(&settings()?, args).await,
        Command::Agents(args) => return agents::agents(&settings()?, args).await,
        // The agent's own status goes to the session's `exit` file; this only says ok or not.
        Command::AgentRelay(args) => {
            return Ok(orch_agents::tmux::relay(&args.dir, &args.argv) == 0)
        }
        Command::AgentSim(args) => return agents::agent_sim(args).await,
        Command::ModelServer(args) => agents::model_server(args).await?,
        Command::Admin(command) => return admin::admin(&settings()?, command).await,
        Command::Recover(args) => commands::recover(&settings()?, args).await?,
        Command::Gc(args) => daemon::gc(&settings()?, args).await?,
        Command::Job(command) => jobs::job(&settings()?, &remote, command).await?,
        Command::Service(command) => return service::service(&settings()?, command).await,
        Command::Config(command) => configure::config(&settings()?, database, command)?,
        Command::Completions(args) => completions::completions(args)?,
        Command::Man(args) => completions::man(args)?,
        Command::Dashboard(args) => dashboard::dashboard(&settings()?, args).await?,
        Command::Debug(DebugCommand::ClaimLoop(args)) => {
            debug::claim_loop(&settings()?, args).await?
        }
    }
    Ok(true)
}
