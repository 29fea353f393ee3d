//! `orch service`: run `orch serve` under the user's service manager: a systemd user unit
//! (`~/.config/systemd/user/<name>.service`) on Linux, a launchd agent
//! (`~/Library/LaunchAgents/<label>.plist`) on macOS. The unit runs this very binary with the
//! home given by `--home` (or the default one), so several homes may each have their own unit
//! (`--name`). No secret goes into a unit: the database URL (which may carry a password) is
//! read by the daemon from the home's `config.toml` or its environment, never written here.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::Settings;
use crate::UserError;

/// `orch service ...`.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Write the unit (systemd user unit, or launchd agent on macOS) for `orch serve` with this
    /// home, reload the service manager and enable it at login. Does not start it: `orch
    /// service start`.
    Install(ServiceInstallArgs),
    /// Stop and disable the service and remove its unit.
    Uninstall(ServiceArgs),
    /// Start the service.
    Start(ServiceArgs),
    /// Stop the service (SIGTERM: running steps get the daemon's grace period).
    Stop(ServiceArgs),
    /// Show the service manager's status of the service.
    Status(ServiceArgs),
}

/// Which service.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The unit's name (`<name>.service`; on macOS the agent `dev.orch.<name>`), one per home.
    #[arg(long, default_value = "orch", value_parser = parse_name)]
    pub name: String,
}

/// `orch service install`.
#[derive(Debug, Args)]
pub struct ServiceInstallArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// `orch serve --listen` for the service.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7700")]
    pub listen: std::net::SocketAddr,
    /// `orch serve --workers` for the service.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Replace an existing unit of this name.
    #[arg(long)]
    pub force: bool,
    /// Write the unit only; do not ask the service manager to reload or enable it (for
    /// machines without a running user manager, and for checking the unit).
    #[arg(long)]
    pub no_enable: bool,
}

fn parse_name(text: &str) -> Result<String, String> {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not a service name; use letters, digits, `-`, `_` and `.`"
        ))
    }
}

/// What the unit runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeCommandLine {
    /// The `orch` binary.
    pub exe: PathBuf,
    /// The home.
    pub home: PathBuf,
    /// `--listen`.
    pub listen: std::net::SocketAddr,
    /// `--workers`.
    pub workers: usize,
}

impl ServeCommandLine {
    fn argv(&self) -> Vec<String> {
        vec![
            self.exe.display().to_string(),
            "--home".into(),
            self.home.display().to_string(),
            "serve".into(),
            "--listen".into(),
            self.listen.to_string(),
            "--workers".into(),
            self.workers.to_string(),
        ]
    }
}

/// One argument of a systemd `ExecStart=`: double-quoted, with `\`, `"`, `%` (specifiers)
/// and `$` (variables) escaped, so any path is taken literally.
fn systemd_quote(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The systemd user unit running `command`.
pub fn systemd_unit(command: &ServeCommandLine) -> String {
    let exec = command
        .argv()
        .iter()
        .map(|a| systemd_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "# Written by `orch service install`; `orch service uninstall` removes it.\n\
         [Unit]\n\
         Description=orch daemon for the home {home}\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={exec}\n\
         # SIGTERM stops claiming and lets running steps finish for the daemon's --grace (30 s).\n\
         KillSignal=SIGTERM\n\
         KillMode=mixed\n\
         TimeoutStopSec=60\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         UMask=0077\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        home = command.home.display().to_string().replace('%', "%%"),
    )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The launchd label of a service name.
pub fn launchd_label(name: &str) -> String {
    format!("dev.orch.{name}")
}

/// The launchd agent (property list) running `command`; logs go to `<home>/logs/`.
pub fn launchd_plist(name: &str, command: &ServeCommandLine) -> String {
    let args = command
        .argv()
        .iter()
        .map(|a| format!("        <string>{}</string>\n", xml_escape(a)))
        .collect::<String>();
    let logs = command.home.join("logs");
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n\
         <dict>\n\
         \x20   <key>Label</key>\n\
         \x20   <string>{label}</string>\n\
         \x20   <key>ProgramArguments</key>\n\
         \x20   <array>\n{args}\x20   </array>\n\
         \x20   <key>RunAtLoad</key>\n\
         \x20   <true/>\n\
         \x20   <key>KeepAlive</key>\n\
         \x20   <dict>\n\
         \x20       <key>SuccessfulExit</key>\n\
         \x20       <false/>\n\
         \x20   </dict>\n\
         \x20   <key>ExitTimeOut</key>\n\
         \x20   <integer>60</integer>\n\
         \x20   <key>Umask</key>\n\
         \x20   <integer>63</integer>\n\
         \x20   <key>StandardOutPath</key>\n\
         \x20   <string>{out}</string>\n\
         \x20   <key>StandardErrorPath</key>\n\
         \x20   <string>{err}</string>\n\
         </dict>\n\
         </plist>\n",
        label = xml_escape(&launchd_label(name)),
        out = xml_escape(&logs.join(format!("{name}.out.log")).display().to_string()),
        err = xml_escape(&logs.join(format!("{name}.err.log")).display().to_string()),
    )
}

/// Where the unit of `name` goes.
pub fn unit_path(name: &str) -> anyhow::Result<PathBuf> {
    if cfg!(target_os = "macos") {
        let home = dirs::home_dir().context("this user has no home directory")?;
        Ok(home
            .join("Library/LaunchAgents")
            .join(format!("{}.plist", launchd_label(name))))
    } else {
        let config = dirs::config_dir().context("this user has no configuration directory")?;
        Ok(config.join("systemd/user").join(format!("{name}.service")))
    }
}

/// Run `orch service ...`.
pub async fn service(settings: &Settings, command: ServiceCommand) -> anyhow::Result<bool> {
    match command {
        ServiceCommand::Install(args) => install(settings, args).await,
        ServiceCommand::Uninstall(args) => {
            let path = unit_path(&args.name)?;
            if !path.exists() {
                return Err(UserError::new(format!(
                    "no service `{}` is installed ({} does not exist)",
                    args.name,
                    path.display()
                ))
                .into());
            }
            // Stopping a service that is not running is fine; the unit goes either way.
            let _ = manager(Action::Stop, &args.name).await;
            let _ = manager(Action::Disable, &args.name).await;
            std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
            let _ = manager(Action::Reload, &args.name).await;
            println!("removed the service {} ({})", args.name, path.display());
            Ok(true)
        }
        ServiceCommand::Start(args) => drive(Action::Start, &args.name).await,
        ServiceCommand::Stop(args) => drive(Action::Stop, &args.name).await,
        ServiceCommand::Status(args) => drive(Action::Status, &args.name).await,
    }
}

async fn install(settings: &Settings, args: ServiceInstallArgs) -> anyhow::Result<bool> {
    let name = &args.service.name;
    let exe = std::env::current_exe().context("find the orch binary to run")?;
    let command = ServeCommandLine {
        exe,
        home: settings.home.clone(),
        listen: args.listen,
        workers: args.workers,
    };
    if settings.database_source == "--database" || settings.database_source == "ORCH_DATABASE_URL" {
        eprintln!(
            "warning: the database was chosen with {}, which the service will not see; write \
             `database = \"...\"` in {} so the service uses it too (a URL with a password \
             must not go into a unit file)",
            settings.database_source,
            settings.home.join("config.toml").display()
        );
    }
    let path = unit_path(name)?;
    if path.exists() && !args.force {
        return Err(UserError::new(format!(
            "{} exists already; pass --force to replace it, or --name for a second service",
            path.display()
        ))
        .into());
    }
    let text = if cfg!(target_os = "macos") {
        std::fs::create_dir_all(settings.home.join("logs"))
            .with_context(|| format!("create {}", settings.home.join("logs").display()))?;
        launchd_plist(name, &command)
    } else {
        systemd_unit(&command)
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    write_file(&path, &text)?;
    println!("wrote {}", path.display());
    if !args.no_enable {
        manager(Action::Reload, name).await?;
        manager(Action::Enable, name).await?;
        println!(
            "enabled at login; start it now with `orch service start{}`",
            name_flag(name)
        );
    }
    Ok(true)
}

fn name_flag(name: &str) -> String {
    if name == "orch" {
        String::new()
    } else {
        format!(" --name {name}")
    }
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    // Readable by the user's service manager only (the umask makes it 0600).
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text).with_context(|| format!("write {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("write {}", path.display()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Reload,
    Enable,
    Disable,
    Start,
    Stop,
    Status,
}

/// The service manager's command line for `action`.
fn manager_argv(action: Action, name: &str) -> (String, Vec<String>) {
    if cfg!(target_os = "macos") {
        let uid = nix::unistd::getuid();
        let label = launchd_label(name);
        let target = format!("gui/{uid}/{label}");
        let plist = unit_path(name)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let args: Vec<String> = match action {
            Action::Reload | Action::Disable => vec!["bootout".into(), target],
            Action::Enable => vec!["bootstrap".into(), format!("gui/{uid}"), plist],
            Action::Start => vec!["kickstart".into(), target],
            Action::Stop => vec!["kill".into(), "SIGTERM".into(), target],
            Action::Status => vec!["print".into(), target],
        };
        ("launchctl".into(), args)
    } else {
        let unit = format!("{name}.service");
        let args: Vec<String> = match action {
            Action::Reload => vec!["--user".into(), "daemon-reload".into()],
            Action::Enable => vec!["--user".into(), "enable".into(), unit],
            Action::Disable => vec!["--user".into(), "disable".into(), unit],
            Action::Start => vec!["--user".into(), "start".into(), unit],
            Action::Stop => vec!["--user".into(), "stop".into(), unit],
            Action::Status => vec!["--user".into(), "status".into(), "--no-pager".into(), unit],
        };
        ("systemctl".into(), args)
    }
}

async fn manager(action: Action, name: &str) -> anyhow::Result<String> {
    let (program, args) = manager_argv(action, name);
    let shown = format!("{program} {}", args.join(" "));
    let output = orch_process::Spawn::new(&program)
        .args(&args)
        .envs(crate::config::service_manager_env())
        .output()
        .await
        .with_context(|| format!("run `{shown}` (is the service manager installed?)"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() && action != Action::Status {
        anyhow::bail!(
            "`{shown}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(stdout)
}

async fn drive(action: Action, name: &str) -> anyhow::Result<bool> {
    let path = unit_path(name)?;
    if !path.exists() {
        return Err(UserError::new(format!(
            "no service `{name}` is installed ({} does not exist); run `orch service install{}` first",
            path.display(),
            name_flag(name)
        ))
        .into());
    }
    let (program, args) = manager_argv(action, name);
    let output = orch_process::Spawn::new(&program)
        .args(&args)
        .envs(crate::config::service_manager_env())
        .output()
        .await
        .with_context(|| format!("run `{program}`"))?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    Ok(output.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(home: &str) -> ServeCommandLine {
        ServeCommandLine {
            exe: PathBuf::from("/usr/local/bin/orch"),
            home: PathBuf::from(home),
            listen: "127.0.0.1:7700".parse().unwrap(),
            workers: 3,
        }
    }

    #[test]
    fn the_unit_runs_serve_with_the_home_quoted_literally() {
        let unit = systemd_unit(&command("/home/a b/100%$HOME\"x"));
        let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert_eq!(
            exec,
            "ExecStart=\"/usr/local/bin/orch\" \"--home\" \"/home/a b/100%%$$HOME\\\"x\" \"serve\" \
             \"--listen\" \"127.0.0.1:7700\" \"--workers\" \"3\""
        );
        assert!(unit.contains("WantedBy=default.target"));
    }

    #[test]
    fn the_launchd_agent_escapes_its_arguments_and_logs_into_the_home() {
        let plist = launchd_plist("orch", &command("/Users/a/<orch>&"));
        assert!(plist.contains("<string>dev.orch.orch</string>"));
        assert!(plist.contains("<string>/Users/a/&lt;orch&gt;&amp;</string>"));
        assert!(plist.contains("<string>/Users/a/&lt;orch&gt;&amp;/logs/orch.err.log</string>"));
        assert!(plist.contains("<string>serve</string>"));
        assert!(!plist.contains("<orch>"));
    }

    #[test]
    fn names_are_checked() {
        assert!(parse_name("orch-2").is_ok());
        assert!(parse_name("../x").is_err());
        assert!(parse_name("").is_err());
    }
}
