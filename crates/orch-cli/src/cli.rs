//! The command line: clap definitions only. Each subcommand's work is in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// orch: a durable, local-first orchestrator for AI coding agents and command pipelines.
///
/// Tasks with dependencies are stored in an embedded SQLite database under the orch home
/// (`--home`, `ORCH_HOME`, or the per-user data directory). Workers claim them with leases, so a
/// crash never loses a task or completes one twice.
#[derive(Debug, Parser)]
#[command(name = "orch", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// The orch home: database, run bundles, worktrees [env: ORCH_HOME] [default: the per-user
    /// data directory, e.g. ~/.local/share/orch]
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// The database: `postgres://user@host/db` (or `postgresql://`) for a PostgreSQL server
    /// several daemons share, or `sqlite:///ABSOLUTE/PATH.db` for an SQLite file outside the home
    /// [env: ORCH_DATABASE_URL] [config: `database = "URL"` in <home>/config.toml] [default:
    /// the SQLite file orch.db in the home]
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,

    /// Send task commands, `run` and `status` to the daemon at this URL (e.g.
    /// http://127.0.0.1:7700) instead of the home's store [default: the daemon of the home, if
    /// one runs with an API]
    #[arg(long, global = true, env = "ORCH_URL", value_name = "URL")]
    pub server: Option<String>,

    /// A file holding the token to send (mode 0600): for client commands the daemon's admin
    /// token [env: ORCH_TOKEN holds the token itself] [default: the file `token` in the home];
    /// for `orch worker` the daemon's worker token [env: ORCH_WORKER_TOKEN]
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Refused: a token on the command line is visible to every local user (`ps`,
    /// /proc/PID/cmdline). Use --token-file or the environment.
    #[arg(long, global = true, hide = true, value_name = "TOKEN")]
    pub token: Option<String>,

    /// A CA certificate (PEM) to trust for an https:// --server besides the usual roots, e.g.
    /// the daemon's own self-signed certificate (also for `orch worker`)
    #[arg(long, global = true, env = "ORCH_CA_CERT", value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,

    /// Colour the output: `auto` on a terminal unless NO_COLOR is set, `always`, or `never`.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,

    /// Log more (repeat for more detail); logs go to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// When to colour output (`--color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always, even into a file or pipe.
    Always,
    /// Never.
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the orch home and register a project directory.
    Init(InitArgs),
    /// Run the daemon: a scheduler and embedded workers that run queued tasks.
    ///
    /// Tasks added by other `orch` processes to the same home are picked up within a fraction of
    /// a second. SIGTERM or Ctrl-C stops claiming, lets running steps finish for up to --grace,
    /// then gives unfinished runs back to the queue. A second signal exits at once.
    Serve(ServeArgs),
    /// Run remote workers: claim and run tasks of the daemon at --server over its HTTP API.
    ///
    /// The worker uses its own checkout of each project: the one given with --project NAME=PATH,
    /// else the same absolute path as on the daemon's machine; it never reads the daemon's
    /// files. Worktrees go to its own --home; each run's bundle is written there and mirrored
    /// to the daemon (logs and events while the run goes on, the whole bundle before the
    /// result). SIGTERM or Ctrl-C stops claiming, lets running steps finish for up to --grace,
    /// then gives unfinished runs back.
    ///
    /// The worker token (the file `worker-token` in the daemon's home) comes from
    /// --token-file PATH or ORCH_WORKER_TOKEN, never from the command line.
    Worker(WorkerArgs),
    /// Show what orch does, end to end, in a throwaway repository: a workflow of agent (`sim`)
    /// and command steps with dependencies, run by embedded workers, with live progress and a
    /// summary. Needs nothing but git; no network, no API keys.
    Demo(DemoArgs),
    /// Add, list, inspect and steer tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Submit a workflow file: several tasks with `needs:` dependencies, all or nothing.
    Run(RunArgs),
    /// Count tasks by status.
    Status(JsonArgs),
    /// Show spend per day, project and agent, and today's spend and running tasks against the
    /// limits of `[concurrency]` and `[budgets]` in <home>/config.toml (the running daemon's,
    /// when one answers).
    ///
    /// A task a limit holds back stays `queued` with the reason (`waiting for: ...`) until a
    /// running task finishes, the day resets (midnight in `budgets.time_zone`, default UTC) or
    /// the limit is raised (the daemon re-reads config.toml when it changes).
    Usage(UsageArgs),
    /// Print a task's transitions live, through the running daemon, until it is finished.
    Stream(StreamArgs),
    /// List the agents orch can run: installed or not, version, whether config enables them.
    ///
    /// Real CLIs run only when `[agents] enable_real_cli = true` (or ORCH_ENABLE_REAL_CLI=1)
    /// and, if `[agents] allowed` is set, they are in it; `sim` always runs. Settings come from
    /// `<home>/config.toml` and the project's `.orch.toml` (--project, default: this directory).
    Agents(AgentsArgs),
    /// Check the database: replay every task's events and compare with its state.
    ///
    /// Exits 1 if any task disagrees with its event log or breaks an invariant. Also lists the
    /// agent CLIs (probed at once, a few seconds at most; versions are cached in the home by
    /// binary path and modification time) unless --no-agents.
    Doctor(DoctorArgs),
    /// Run stale recovery now: expired leases are lost, their tasks retried or sent to review;
    /// retries whose backoff elapsed are queued.
    Recover(JsonArgs),
    /// Remove the worktrees of finished tasks (done, failed, cancelled) whose branch is merged or
    /// that finished longer ago than --older-than, and their run bundles once they finished
    /// longer ago than --bundles-older-than. Branches are kept; needs_review tasks keep their
    /// worktrees and bundles. `orch serve` does this hourly (--bundle-retention).
    Gc(GcArgs),
    /// Move a whole home to another database or machine: export it to one archive file, import
    /// that into an empty home.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print the version.
    Version(JsonArgs),
    /// Print the JSON Schema of workflow or task files.
    Schema(SchemaArgs),
    /// Inside a step: ask a human for values (credentials, a region, a kubeconfig).
    ///
    /// When every KEY (and every required key of --hint) is set in the environment, exits 0 at
    /// once: the step goes on and reads them from its environment. Otherwise it writes the
    /// request to the file named by ORCH_ASK_FILE (which orch gives every step) and exits 75:
    /// the step ends, the run parks and frees its worker slot, and the task waits in
    /// `awaiting_input` until someone runs `orch task answer`; then the task is queued, the
    /// finished steps are skipped and this step runs again with the values in its environment
    /// (a --file value as the path of a private file). Secret values are encrypted at rest,
    /// never shown again and redacted from logs and bundles. An unanswered request sends the
    /// task to `needs_review` after `input_timeout` (`.orch.toml`, default 24h).
    ///
    /// Example: `orch ask --hint aws || exit $?` at the top of a deploy script.
    Ask(AskArgs),
    /// Open the web dashboard: print a one-time sign-in link for you (valid 10 minutes, used
    /// once) and open it in your browser with xdg-open when there is one.
    ///
    /// The daemon (`orch serve`) must be running for this home; the link signs you in under
    /// your user name, and your actions in the dashboard are recorded under it. Anyone may
    /// instead sign in with the admin token (the file `token` in the home).
    Dashboard(DashboardArgs),
    /// Internal tools for tests and benchmarks.
    #[command(subcommand, hide = true)]
    Debug(DebugCommand),
    /// Internal: run an agent's command line inside a live (tmux) session, copying its output
    /// to the session's files for the worker.
    #[command(hide = true)]
    AgentRelay(AgentRelayArgs),
    /// Internal: serve a scripted model (Anthropic Messages, OpenAI Responses and Chat
    /// Completions, Gemini) on 127.0.0.1 for running the real agent CLIs offline. The script
    /// format is documented in the `orch-modelsim` crate. Stops on Ctrl-C.
    #[command(hide = true)]
    ModelServer(ModelServerArgs),
    /// Internal: run the `sim` agent as a process that prints orch's event lines (live
    /// sessions run it this way).
    #[command(hide = true)]
    AgentSim(AgentSimArgs),
    /// Cron jobs: schedules that submit a task or a workflow at each slot (fired by the
    /// daemon's scheduler, once per slot however many daemons share the database).
    #[command(subcommand)]
    Job(crate::jobs::JobCommand),
    /// Run `orch serve` as a user service: a systemd user unit (a launchd agent on macOS).
    #[command(subcommand)]
    Service(crate::service::ServiceCommand),
    /// Show the merged configuration and where each value comes from, or set a key in the
    /// home's config.toml.
    #[command(subcommand)]
    Config(crate::configure::ConfigCommand),
    /// Print a shell completion script, e.g. `orch completions bash > ~/.local/share/bash-completion/completions/orch`.
    Completions(crate::completions::CompletionsArgs),
    /// Print the man page (roff), e.g. `orch man | man -l -`, or write every page with --dir.
    Man(crate::completions::ManArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Embedded workers (runs at the same time); 0 leaves the work to remote `orch worker`s.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Lease length (1s or more): a run whose worker stops heartbeating for this long is
    /// recovered.
    #[arg(long, default_value = "30s", value_parser = parse_lease)]
    pub lease: std::time::Duration,
    /// How long running steps may take to finish after SIGTERM before they are requeued.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub grace: std::time::Duration,
    /// Remove the run bundles of tasks that finished longer ago than this (hourly; needs_review
    /// tasks keep theirs).
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub bundle_retention: std::time::Duration,
    /// Exit once no task is queued, running, waiting or retrying.
    #[arg(long)]
    pub exit_when_idle: bool,
    /// Serve the HTTP API on this address (port 0: any free port; the bound address is written
    /// to `<home>/serve.addr`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7700")]
    pub listen: std::net::SocketAddr,
    /// Serve plaintext HTTP on a non-loopback address; use only behind TLS termination.
    #[arg(long)]
    pub insecure_listen: bool,
    /// Serve HTTPS with this certificate chain (PEM; the server's certificate first). A
    /// non-loopback --listen needs no --insecure-listen then. Needs --tls-key.
    #[arg(long, value_name = "PEM", env = "ORCH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", env = "ORCH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// API requests per second each client may send on average (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub rate_limit: u32,
    /// API requests a client may send at once before --rate-limit applies.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub rate_burst: u32,
    /// An origin browsers may call the API from (repeatable; `*` for any). Default: none.
    #[arg(long, value_name = "ORIGIN")]
    pub cors_origin: Vec<String>,
    /// The most a remote worker's run bundle (its streamed logs and uploaded files) may take in
    /// the home, e.g. 512MiB, 2GiB or a number of bytes; beyond it the upload is refused.
    #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = parse_size)]
    pub max_bundle_size: u64,
    /// A file holding the secret GitHub signs webhook deliveries with (`POST
    /// /v1/webhooks/github`); the secret itself may come from ORCH_GITHUB_WEBHOOK_SECRET
    /// instead. Without either, the route answers 404. Needs --github-project.
    #[arg(long, value_name = "FILE", env = "ORCH_GITHUB_WEBHOOK_SECRET_FILE")]
    pub github_webhook_secret_file: Option<PathBuf>,
    /// The project (its checkout on this machine) that tasks created from GitHub issues and
    /// comments belong to.
    #[arg(long, value_name = "DIR", env = "ORCH_GITHUB_PROJECT")]
    pub github_project: Option<PathBuf>,
    /// Comments mentioning @HANDLE on GitHub create tasks.
    #[arg(
        long,
        value_name = "HANDLE",
        env = "ORCH_GITHUB_HANDLE",
        default_value = "orch"
    )]
    pub github_handle: String,
}

/// `512MiB`, `2GiB`, `64KiB`, `1000` (bytes); `K`, `M`, `G` mean the same powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    orch_worker::project::ByteSize::parse(text).map(orch_worker::project::ByteSize::bytes)
}

/// `--slots`: how many runs at once; 0 would run nothing.
pub fn parse_slots(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("0 slots would run nothing; give 1 or more".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a number of slots; give 1 or more")),
    }
}

/// `--lease`: a duration of at least a second (heartbeats go every third of it).
pub fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    let lease = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write it like `30s`"))?;
    if lease < std::time::Duration::from_secs(1) {
        return Err(format!(
            "a lease of {text} would expire before the first heartbeat; give 1s or more (e.g. 30s)"
        ));
    }
    Ok(lease)
}

/// `NAME=PATH` for `orch worker --project`.
pub fn parse_checkout(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, path)) if !name.trim().is_empty() && !path.trim().is_empty() => {
            Ok((name.trim().to_owned(), PathBuf::from(path.trim())))
        }
        _ => Err(format!(
            "`{text}` is not NAME=PATH (the project's name on the daemon, `=`, the directory \
             of its checkout on this machine)"
        )),
    }
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The daemon's address (`orch serve --listen`), e.g. http://127.0.0.1:7700, or https://...
    /// for a daemon serving TLS (see --ca-cert for a self-signed certificate).
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The worker's name (slots are `<name>-1`, `<name>-2`, ...); unique per machine.
    #[arg(long)]
    pub name: String,
    /// Runs at the same time (1 or more).
    #[arg(long, default_value_t = 1, value_parser = parse_slots)]
    pub slots: usize,
    /// Lease length (1s or more): a run whose worker stops heartbeating for this long is
    /// recovered.
    #[arg(long, default_value = "30s", value_parser = parse_lease)]
    pub lease: std::time::Duration,
    /// How long running steps may take to finish after SIGTERM before they are requeued.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub grace: std::time::Duration,
    /// Where a project is checked out on this machine: NAME=PATH, NAME being the project's
    /// name on the daemon (repeatable). Projects not named here are used at the same absolute
    /// path as on the daemon's machine.
    #[arg(long = "project", value_name = "NAME=PATH", value_parser = parse_checkout)]
    pub projects: Vec<(String, PathBuf)>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Remove worktrees of tasks that finished longer ago than this, merged or not.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub older_than: std::time::Duration,
    /// Remove the run bundles (logs, results, patches under `<home>/runs/<task>`) of tasks that
    /// finished longer ago than this; needs_review tasks keep theirs.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub bundles_older_than: std::time::Duration,
    /// Only say what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo here instead of a new temporary directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the temporary directory (repository and home) at the end instead of removing it.
    #[arg(long)]
    pub keep: bool,
    /// Embedded workers.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Skip the agent CLIs: check the database (and the config) only.
    #[arg(long)]
    pub no_agents: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Days of per-day spend to show, counting today.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=366))]
    pub days: u32,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The project directory to register [default: the repository or directory you are in].
    pub dir: Option<PathBuf>,
    /// Link the project to this GitHub repository (`owner/repo`): its issues labelled with the
    /// trigger label become tasks, and finished tasks are pushed and opened as pull requests
    /// (configure `[forge]` in the project's .orch.toml: token_file or token_env, api_base,
    /// trigger_label, draft_prs, auto_merge, round_limit, delete_branch_on_merge, remote).
    /// Running it again relinks the project.
    #[arg(long, value_name = "OWNER/REPO")]
    pub repo: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workflow file (YAML). See `orch schema workflow` for its format.
    pub file: PathBuf,
    /// Run the workflow to the end in the foreground, with progress: through the daemon if one
    /// runs, else with embedded workers here. Exits 0 when every task is done, 1 naming the
    /// tasks that are not.
    #[arg(long)]
    pub wait: bool,
    /// The project the tasks belong to, an existing directory [default: the file's `project:`,
    /// else the repository (or directory) you are in, wherever the file lives].
    #[arg(long, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file format.
    #[arg(value_enum)]
    pub kind: SchemaKind,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchemaKind {
    /// Workflow files (`orch run`).
    Workflow,
    /// Single-task files (`orch task add --file`).
    Task,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Add one task, from flags or from a task file.
    Add(Box<TaskAddArgs>),
    /// List tasks, newest first (the latest 50 unless --limit or --all).
    List(TaskListArgs),
    /// Show one task with its runs and events.
    Get(TaskIdArgs),
    /// Show which agent, model, complexity and profile the router picks for a task, and why,
    /// without running it.
    ///
    /// Labels (`agent:<name>`, `complexity:<level>`, `profile:<name>`) win, then the first
    /// matching `[[router.rules]]` of the project's `.orch.toml`, then the router agent
    /// (`[router] agent`, asked for real: this may cost a model call), then round robin over
    /// `[router] agents` by task id. Only steps with `agent: auto` are routed.
    Route(TaskIdArgs),
    /// Cancel a task that has not finished (a running one loses its lease).
    Cancel(TaskCancelArgs),
    /// Give a failed, needs_review or cancelled task a fresh set of attempts.
    Retry(TaskRetryArgs),
    /// Move a blocked task back into the queue once nothing blocks it.
    Unblock(TaskIdArgs),
    /// Approve a task that waits for approval (it is queued); the `approve` event records
    /// --comment and who approved (`cli:<user>`).
    Approve(TaskApproveArgs),
    /// Reject a task that waits for approval (it is cancelled); the `reject` event records
    /// --comment and who rejected (`cli:<user>`).
    Reject(TaskApproveArgs),
    /// Show a run's logs: orch's log of the run, then each step's output.
    Logs(TaskLogsArgs),
    /// List the live agent sessions (agents configured with `session = "tmux"`).
    Live(JsonArgs),
    /// Attach this terminal to a task's live agent session (detach with Ctrl-b d).
    Attach(TaskAttachArgs),
    /// End a task's live agent session and cancel the task.
    Kill(TaskKillArgs),
    /// Send a follow-up to a finished task's agent: a new run resumes the agent's last session
    /// in the same worktree, with the message as the next prompt.
    Reply(TaskReplyArgs),
    /// Print a task's change against where it started, as a patch (its branch from its start
    /// commit to its head; for a project that is not a git repository, what changed in its
    /// copy).
    Diff(TaskDiffArgs),
    /// Land a finished task's branch in the project's checkout (the registered directory).
    ///
    /// Default: a merge commit into the branch the checkout has checked out (or --into);
    /// --squash makes one commit titled with the task's title; --rebase replays the task's
    /// commits. A checkout with uncommitted changes, or a change that conflicts, is refused and
    /// left exactly as it was (no MERGE_HEAD, same HEAD, same files). orch's git runs with hooks
    /// and user config off. The merge is recorded as a `merged` event on the task. For a
    /// project that is not a git repository, the files the task changed in its copy are copied
    /// back, refusing files changed in the original since the copy was made. Runs on the
    /// daemon's machine, on this home's worktrees (not through --server).
    Merge(TaskMergeArgs),
    /// Answer the info request of a task in `awaiting_input` (see `orch ask`): the task is
    /// queued again and the step that asked runs again with the values in its environment.
    ///
    /// Each value is `KEY=VALUE`, `KEY=-` (read from stdin: all of it for one such key, one
    /// line each for several), `KEY=@FILE` (a file's content, e.g. a kubeconfig) or a bare
    /// `KEY` (prompted for on the terminal, without echo when secret). With no KEY at all,
    /// every key asked is prompted for. Keys the request marks secret (and all with --secret)
    /// are encrypted at rest, never shown again by the CLI or the API, and refused as
    /// `KEY=VALUE` on the command line, where every local user could read them.
    Answer(TaskAnswerArgs),
    /// Apply a finished task's change to the project's working tree without committing.
    ///
    /// Refused, changing nothing, when the patch does not apply cleanly. Runs on this home's
    /// worktrees (not through --server).
    Apply(TaskIdArgs),
    /// Open a GitHub issue for a local task in its project's repository (`orch init --repo`),
    /// once; the task is linked to the issue when orch has opened it (`orch task get` shows
    /// it). The issue carries the project's trigger label and the task's marker, so it does not
    /// become a second task.
    Publish(TaskIdArgs),
}

#[derive(Debug, Args)]
pub struct TaskDiffArgs {
    /// The task's number.
    pub id: i64,
    /// Only list the changed files.
    #[arg(long)]
    pub name_only: bool,
}

#[derive(Debug, Args)]
pub struct TaskMergeArgs {
    /// The task's number.
    pub id: i64,
    /// Land the change as one commit with the task's title.
    #[arg(long, conflicts_with = "rebase")]
    pub squash: bool,
    /// Replay the task's commits onto the branch instead of a merge commit.
    #[arg(long)]
    pub rebase: bool,
    /// The branch to land in [default: the branch the checkout has checked out]. Another
    /// branch is updated without touching the checkout's files.
    #[arg(long, value_name = "BRANCH")]
    pub into: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TaskAttachArgs {
    /// The task's number.
    pub id: i64,
    /// Print what the session's pane shows now (with its scrollback) instead of attaching.
    #[arg(long)]
    pub capture: bool,
}

#[derive(Debug, Args)]
pub struct TaskKillArgs {
    /// The task's number.
    pub id: i64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AgentRelayArgs {
    /// The live session's directory (env.json in, stdout / stderr / exit out).
    #[arg(long)]
    pub dir: PathBuf,
    /// The agent's command line.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ModelServerArgs {
    /// The script (YAML or JSON).
    #[arg(long)]
    pub script: PathBuf,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct AgentSimArgs {
    /// The working directory.
    #[arg(long)]
    pub workdir: PathBuf,
    /// A session to resume (empty: a new one).
    #[arg(long, default_value = "")]
    pub resume: String,
    /// The plan file of a planner step (the worker sets `ORCH_PLAN_FILE` for it).
    #[arg(long, env = "ORCH_PLAN_FILE", hide = true)]
    pub plan_file: Option<String>,
    /// The prompt.
    #[arg(last = true, required = true)]
    pub prompt: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TaskReplyArgs {
    /// The task's number.
    pub id: i64,
    /// What to tell the agent.
    pub message: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AgentsArgs {
    /// The project whose `.orch.toml` to read [default: the current directory].
    #[arg(long)]
    pub project: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// The task's number.
    pub id: i64,
}

#[derive(Debug, Args)]
pub struct TaskLogsArgs {
    /// The task's number.
    pub id: i64,
    /// Which attempt [default: the latest].
    #[arg(long)]
    pub attempt: Option<u32>,
    /// Keep printing new output until the task stops running.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct TaskAddArgs {
    /// One-line title (or use --file).
    #[arg(required_unless_present = "file")]
    pub title: Option<String>,
    /// Read the task from a YAML task file instead (see `orch schema task`).
    #[arg(long, short = 'f', conflicts_with_all = ["title", "body", "exec", "agent"])]
    pub file: Option<PathBuf>,
    /// Longer description; the prompt of agent steps.
    #[arg(long)]
    pub body: Option<String>,
    /// A label (repeatable), e.g. `agent:claude`.
    #[arg(long = "label", short = 'l', value_name = "LABEL")]
    pub labels: Vec<String>,
    /// Higher runs first.
    #[arg(long, short = 'p', allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// A task that must be done first (repeatable).
    #[arg(long = "needs", value_name = "TASK_ID")]
    pub needs: Vec<i64>,
    /// Attempts before the task ends failed.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// A command to run, split like a shell would but run without one (repeatable: one exec
    /// step with these commands in order), e.g. --exec "cargo test --quiet".
    #[arg(long, value_name = "COMMAND")]
    pub exec: Vec<String>,
    /// Run this agent with the body (or title) as its prompt, e.g. --agent sim; `--agent auto`
    /// lets the router choose (see `orch task route`).
    #[arg(long)]
    pub agent: Option<String>,
    /// Wait for `orch task approve` before running.
    #[arg(long)]
    pub requires_approval: bool,
    /// A key unique among the project's live (unfinished) tasks: while a task with this key
    /// lives, the existing task is returned and nothing is added (cron jobs, webhooks and
    /// scripts rely on it). Not a workflow file's `id`.
    #[arg(long = "key", visible_alias = "unique-key", value_name = "KEY")]
    pub unique_key: Option<String>,
    /// The parent task: it rests `blocked` until all its children are done, then continues
    /// (its next step sees their results); a failed child sends it to `needs_review`.
    #[arg(long, value_name = "TASK_ID")]
    pub parent: Option<i64>,
    /// A tool the task needs on the worker (repeatable): `NAME` or `NAME<requirement>`, e.g.
    /// `git>=2.30`, `jq=1.7`, `node^18`. Checked before the worktree is made; a missing or
    /// mismatched tool fails the task. (A checksum needs a task file's `tools:`.)
    #[arg(long = "tool", value_name = "TOOL")]
    pub tools: Vec<String>,
    /// The most input plus output tokens one run may spend on agents: passing it stops the
    /// agent mid-session (failure class `budget_exceeded`) and sends the task to `needs_review`.
    /// Overrides a task file's `budget.tokens`.
    #[arg(long, value_name = "N")]
    pub budget_tokens: Option<u64>,
    /// The most US dollars one run may spend on agents (as reported by them), e.g. 2.5; like
    /// --budget-tokens. Overrides a task file's `budget.cost_usd`.
    #[arg(long, value_name = "USD")]
    pub budget_usd: Option<f64>,
    /// The project, an existing directory [default: the repository or directory you are in].
    #[arg(long, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TaskListArgs {
    /// Only tasks in this status (waiting, queued, running, done, failed, ...).
    #[arg(long, short = 's')]
    pub status: Option<String>,
    /// Only tasks of this project (its name or directory).
    #[arg(long)]
    pub project: Option<String>,
    /// Only tasks with this label.
    #[arg(long, short = 'l', value_name = "LABEL")]
    pub label: Option<String>,
    /// Show at most this many, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Show every task (no --limit).
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,
    /// Show children under their parents, indented.
    #[arg(long)]
    pub tree: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TaskApproveArgs {
    /// The task's number.
    pub id: i64,
    /// Why, recorded in the event log with who decided.
    #[arg(long, short = 'm')]
    pub comment: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TaskIdArgs {
    /// The task's number.
    pub id: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TaskCancelArgs {
    /// The task's number.
    pub id: i64,
    /// Why, recorded in the event log.
    #[arg(long)]
    pub reason: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TaskRetryArgs {
    /// The task's number.
    pub id: i64,
    /// Wait this long before the next attempt, e.g. `30s` or `5m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub delay: Option<std::time::Duration>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Write the home's database (projects, workflows, tasks, dependencies, runs, events, usage,
    /// replies, reviews, webhook deliveries) and its run bundles to one archive file (tar.gz,
    /// mode 0600: it holds token hashes and the bundles' logs).
    ///
    /// Refused while `orch serve` runs in this home: stop the daemon (and remote workers)
    /// first. The file appears only once complete. Worktrees, tokens, config and `secret.key`
    /// are not included; copy `config.toml` and `secret.key` yourself if you use them.
    Export(ArchiveArgs),
    /// Fill an empty home (its database: the SQLite file, or ORCH_DATABASE_URL's) from an
    /// archive written by `orch admin export`, then check it as `orch doctor` does.
    ///
    /// Refused if the database holds any row or the home has run bundles. The whole archive is
    /// checked before anything is written, and the rows go in with one transaction, so a
    /// damaged archive changes nothing. Exits 1 if the check finds problems.
    Import(ArchiveArgs),
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// The archive file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Claim and complete tasks in a loop, printing one JSON line per action.
    ClaimLoop(ClaimLoopArgs),
}

#[derive(Debug, Args)]
pub struct ClaimLoopArgs {
    /// The worker name recorded as lease owner.
    #[arg(long)]
    pub owner: String,
    /// Lease length in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub lease_ms: u64,
    /// Hold each claim this long (heartbeating) before completing, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub hold_ms: u64,
    /// Heartbeat every this many milliseconds while holding.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Stop after this many claims.
    #[arg(long)]
    pub max: Option<u64>,
    /// Exit after finding nothing to claim this many times in a row (50 ms apart).
    #[arg(long, default_value_t = 20)]
    pub idle_polls: u32,
    /// Still try to complete after a heartbeat was refused (to test fencing).
    #[arg(long)]
    pub complete_after_lost_lease: bool,
    /// Report this outcome: succeeded, failed or needs_review.
    #[arg(long, default_value = "succeeded")]
    pub outcome: String,
}

#[derive(Debug, Args)]
pub struct AskArgs {
    /// The environment variables to ask for (capital letters, digits and `_`).
    pub keys: Vec<String>,
    /// The values are secret: encrypted at rest, never shown again, redacted everywhere.
    #[arg(long)]
    pub secret: bool,
    /// The values are files' contents (a kubeconfig, a JSON key): the step gets the path of a
    /// private file holding each in the variable.
    #[arg(long)]
    pub file: bool,
    /// Ask for a provider's credentials, the secret ones marked: `aws` (AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN and AWS_DEFAULT_REGION), `gcp`
    /// (GOOGLE_APPLICATION_CREDENTIALS as a file, optional GOOGLE_CLOUD_PROJECT), `azure`
    /// (AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID, optional
    /// AZURE_SUBSCRIPTION_ID), `kubernetes` (KUBECONFIG as a file).
    #[arg(long)]
    pub hint: Option<String>,
    /// Why, for the person answering.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct TaskAnswerArgs {
    /// The task's number.
    pub id: i64,
    /// The values: `KEY=VALUE`, `KEY=-` (stdin), `KEY=@FILE`, or `KEY` (prompt).
    pub values: Vec<String>,
    /// Treat every value as secret, whatever the request says.
    #[arg(long)]
    pub secret: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Print the link only; do not start a browser.
    #[arg(long)]
    pub no_open: bool,
    /// The dashboard's base URL as your browser reaches it (a proxy, a tunnel); default: the
    /// running daemon's address from `<home>/serve.url`.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}
