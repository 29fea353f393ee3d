//! Settings: flags over `ORCH_*` environment variables over the home's `config.toml` over
//! defaults, parsed once.
//!
//! This is the only module that reads the environment.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use orch_store::{DatabaseConfig, SqliteOptions, Synchronous};

/// Everything the commands need to know about where and how to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The orch home.
    pub home: PathBuf,
    /// The database: `--database`, else `ORCH_DATABASE_URL`, else `database` in
    /// `<home>/config.toml`, else the home's SQLite file `orch.db`.
    database: DatabaseConfig,
    /// Where the database choice came from (`--database`, `ORCH_DATABASE_URL`, the config
    /// file), for messages that must not print the URL (it may carry a password).
    pub database_source: String,
    /// `ORCH_SECRET_KEY`: the key for secrets kept at rest (base64, 32 bytes); unset: the
    /// home's `secret.key`.
    pub secret_key: Option<String>,
}

impl Settings {
    /// Resolve settings from the `--home` and `--database` flags, the environment and the
    /// home's `config.toml`.
    pub fn load(home_flag: Option<&Path>, database_flag: Option<&str>) -> anyhow::Result<Settings> {
        let home = match home_flag {
            Some(home) => home.to_owned(),
            None => match std::env::var_os("ORCH_HOME").filter(|v| !v.is_empty()) {
                Some(home) => PathBuf::from(home),
                None => dirs::data_dir()
                    .map(|d| d.join("orch"))
                    .context("no --home given, ORCH_HOME is unset and this system has no per-user data directory; pass --home DIR")?,
            },
        };
        let home = absolute(&home)?;
        crate::errors::expect_directory("the orch home", &home)?;
        let mut sqlite = SqliteOptions::default();
        if let Some(raw) = env_text("ORCH_SQLITE_SYNCHRONOUS")? {
            sqlite.synchronous = match raw.to_ascii_lowercase().as_str() {
                "normal" => Synchronous::Normal,
                "full" => Synchronous::Full,
                other => bail!("ORCH_SQLITE_SYNCHRONOUS={other} is not a setting orch knows; use `normal` (safe against process crashes, the default) or `full` (also against power loss)"),
            };
        }
        if let Some(raw) = env_text("ORCH_SQLITE_BUSY_TIMEOUT")? {
            sqlite.busy_timeout = humantime::parse_duration(&raw).with_context(|| {
                format!("ORCH_SQLITE_BUSY_TIMEOUT={raw} is not a duration; write it like `30s`")
            })?;
        }
        // Every command that uses the home keeps it private (the `orch` binary's umask makes
        // what it creates private too).
        if home.exists() {
            if let Some(mode) = orch_store::home::secure(&home)
                .with_context(|| format!("make the home {} private (mode 0700)", home.display()))?
            {
                eprintln!(
                    "warning: the orch home {} could be read by other users (mode {mode:o}); it \
                     is 0700 now",
                    home.display()
                );
            }
        }
        let secret_key = env_text("ORCH_SECRET_KEY")?;
        let config_file = home.join("config.toml");
        let chosen = match database_flag.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => Some((url.to_owned(), "--database".to_owned())),
            None => match env_text("ORCH_DATABASE_URL")? {
                Some(url) => Some((url, "ORCH_DATABASE_URL".to_owned())),
                None => configured_database(&config_file)?
                    .map(|url| (url, format!("`database` in {}", config_file.display()))),
            },
        };
        let (database, database_source) = match chosen {
            Some((url, source)) => (parse_database_url(&url, &source, &sqlite)?, source),
            None => (
                DatabaseConfig::Sqlite {
                    path: home.join("orch.db"),
                    options: sqlite.clone(),
                },
                "the home".to_owned(),
            ),
        };
        Ok(Settings {
            home,
            database,
            database_source,
            secret_key,
        })
    }

    /// The database to open.
    pub fn database(&self) -> DatabaseConfig {
        self.database.clone()
    }

    /// The key for secrets kept at rest: `ORCH_SECRET_KEY`, else `<home>/secret.key` (created).
    pub fn secret_box(&self) -> anyhow::Result<orch_store::secret_box::SecretBox> {
        orch_store::secret_box::SecretBox::load(&self.home, self.secret_key.as_deref())
            .map_err(|e| anyhow::Error::from(crate::UserError::new(e.to_string())))
    }

    /// The SQLite database file, if the database is one (`None`: a PostgreSQL server).
    pub fn database_path(&self) -> Option<PathBuf> {
        match &self.database {
            DatabaseConfig::Sqlite { path, .. } => Some(path.clone()),
            DatabaseConfig::Postgres { .. } => None,
        }
    }
}

/// The `database` key of the home's `config.toml`, if the file and the key exist.
fn configured_database(file: &Path) -> anyhow::Result<Option<String>> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read {}", file.display())),
    };
    let table: toml::Table = text.parse().map_err(|e| {
        crate::UserError::new(format!(
            "{}: not valid TOML; fix the file: {e}",
            file.display()
        ))
    })?;
    match table.get("database") {
        None => Ok(None),
        Some(toml::Value::String(url)) if !url.trim().is_empty() => Ok(Some(url.trim().to_owned())),
        Some(_) => bail!(
            "{}: `database` must be a URL in quotes, like `database = \"postgres://user@host/db\"` \
             or `database = \"sqlite:///var/lib/orch/orch.db\"`",
            file.display()
        ),
    }
}

/// A database URL: `postgres://...` / `postgresql://...`, or `sqlite:///ABSOLUTE/PATH` (an SQLite
/// file anywhere, e.g. one several daemons with their own homes share on one machine). `source`
/// names where it came from; the URL itself is never printed (it may carry a password).
fn parse_database_url(
    url: &str,
    source: &str,
    sqlite: &SqliteOptions,
) -> anyhow::Result<DatabaseConfig> {
    let known = "use `postgres://user@host/db` (or `postgresql://`) for a PostgreSQL server, or \
                 `sqlite:///ABSOLUTE/PATH.db` for an SQLite file";
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(DatabaseConfig::Postgres {
            url: url.to_owned(),
        });
    }
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = Path::new(rest);
        if !path.is_absolute() || rest.contains('?') {
            bail!(
                "{source}: an SQLite URL names an absolute file with three slashes and no \
                 options, like `sqlite:///var/lib/orch/orch.db`"
            );
        }
        if rest.ends_with('/') {
            bail!("{source}: the SQLite URL names a directory; name the database file in it");
        }
        return Ok(DatabaseConfig::Sqlite {
            path: path.to_owned(),
            options: sqlite.clone(),
        });
    }
    let scheme = url.split_once("://").map_or("(none)", |(scheme, _)| scheme);
    bail!("{source} is not a database URL orch knows (scheme `{scheme}`); {known}")
}

/// A secret token and where it came from (named in messages; the token itself never is).
#[derive(Clone)]
pub struct Token {
    /// The token, trimmed.
    pub value: String,
    /// `--token-file PATH` or the environment variable's name.
    pub source: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(from {})", self.source)
    }
}

/// A token from `--token-file` if one is given, else from the environment variable `env`
/// (`ORCH_TOKEN`, `ORCH_WORKER_TOKEN`), else none. Never from a command-line value: that is
/// readable by every local user in `/proc/PID/cmdline`. A token file must not be readable by
/// others (like the daemon's own token files), and must not be empty.
pub fn token_from(file: Option<&Path>, env: &str) -> anyhow::Result<Option<Token>> {
    if let Some(path) = file {
        let value = read_token_file(path)?;
        return Ok(Some(Token {
            value,
            source: format!("--token-file {}", path.display()),
        }));
    }
    Ok(env_text(env)?.map(|value| Token {
        value,
        source: env.to_owned(),
    }))
}

fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("--token-file {}: open the token file", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .with_context(|| format!("--token-file {}: stat", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "--token-file {}: the file has mode {:o}, so other users can read the token; run \
                 `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    let mut value = String::new();
    std::io::Read::read_to_string(&mut &file, &mut value)
        .with_context(|| format!("--token-file {}: read", path.display()))?;
    let value = value.trim();
    if value.is_empty() {
        bail!("--token-file {}: the file is empty", path.display());
    }
    Ok(value.to_owned())
}

fn env_text(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => Ok(Some(value.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{name} is not valid UTF-8"),
    }
}

/// Make a path absolute against the current directory, without touching the file system.
pub fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolve the path {}", path.display()))
}

/// The project directory that contains `start`: the nearest ancestor with `.git` or
/// `.orch.toml`, else `start` itself.
pub fn project_root(start: &Path) -> anyhow::Result<PathBuf> {
    let start = absolute(start)?;
    let start = start.canonicalize().unwrap_or(start);
    let mut dir = Some(start.as_path());
    while let Some(candidate) = dir {
        if candidate.join(".git").exists() || candidate.join(".orch.toml").exists() {
            return Ok(candidate.to_owned());
        }
        dir = candidate.parent();
    }
    Ok(start)
}

/// The login name of whoever runs this command (`USER`, else `LOGNAME`), for the actor of
/// events a person causes (`cli:<user>`); `None` when neither is set.
pub fn user_name() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|v| v.trim().to_owned())
        .find(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
        })
}

/// The value of a variable of the step `orch ask` runs in (`None` when unset or empty): the
/// values an info request asked for, and `ORCH_ASK_FILE`.
pub fn step_variable(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The variables a user's service manager client (`systemctl --user`, `launchctl`) needs to
/// reach the user's manager, passed through to it by `orch service` (its environment is
/// otherwise cleared like every process orch starts).
pub fn service_manager_env() -> Vec<(String, String)> {
    [
        "PATH",
        "HOME",
        "USER",
        "XDG_RUNTIME_DIR",
        "DBUS_SESSION_BUS_ADDRESS",
        "LANG",
    ]
    .iter()
    .filter_map(|name| std::env::var(name).ok().map(|v| ((*name).to_owned(), v)))
    .collect()
}

/// The environment variables that override keys of the configuration files, as (key, variable)
/// pairs: what `orch config list` shows as their source.
pub const CONFIG_ENV_OVERRIDES: &[(&str, &str)] = &[
    ("database", "ORCH_DATABASE_URL"),
    ("agents.enable_real_cli", "ORCH_ENABLE_REAL_CLI"),
    ("agents.allowed", "ORCH_ALLOWED_AGENTS"),
    ("sandbox", "ORCH_SANDBOX"),
    ("copy_max_size", "ORCH_COPY_MAX_SIZE"),
];

/// The set overrides of [`CONFIG_ENV_OVERRIDES`]: (key, variable, value).
pub fn config_env_layer() -> anyhow::Result<Vec<(String, String, String)>> {
    let mut found = Vec::new();
    for (key, variable) in CONFIG_ENV_OVERRIDES {
        if let Some(value) = env_text(variable)? {
            found.push(((*key).to_owned(), (*variable).to_owned(), value));
        }
    }
    Ok(found)
}

/// The variables a desktop's "open this file" helper (`xdg-open`) needs to reach the user's
/// browser; `orch dashboard` starts it with these only.
pub fn desktop_env() -> Vec<(String, String)> {
    [
        "PATH",
        "HOME",
        "DISPLAY",
        "WAYLAND_DISPLAY",
        "XAUTHORITY",
        "XDG_RUNTIME_DIR",
        "XDG_CURRENT_DESKTOP",
        "XDG_DATA_DIRS",
        "XDG_CONFIG_DIRS",
        "DBUS_SESSION_BUS_ADDRESS",
        "BROWSER",
    ]
    .iter()
    .filter_map(|name| Some(((*name).to_owned(), env_text(name).ok().flatten()?)))
    .collect()
}
