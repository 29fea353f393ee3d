//! Settings: flags over `ORCH_*` environment variables over defaults, parsed once.
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
    /// SQLite options.
    pub sqlite: SqliteOptions,
    /// `ORCH_DATABASE_URL`: a PostgreSQL server instead of the home's SQLite file.
    pub database_url: Option<String>,
    /// `ORCH_SECRET_KEY`: the key for secrets kept at rest (base64, 32 bytes); unset: the
    /// home's `secret.key`.
    pub secret_key: Option<String>,
}

impl Settings {
    /// Resolve settings from the `--home` flag and the environment.
    pub fn load(home_flag: Option<&Path>) -> anyhow::Result<Settings> {
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
        let database_url = env_text("ORCH_DATABASE_URL")?;
        if let Some(url) = &database_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!("ORCH_DATABASE_URL is not a PostgreSQL URL; write it like `postgres://user@host/db`, or unset it to use the SQLite file in the home");
            }
        }
        Ok(Settings {
            home,
            sqlite,
            database_url,
            secret_key,
        })
    }

    /// The database to open: `ORCH_DATABASE_URL`'s server, else the home's SQLite file.
    pub fn database(&self) -> DatabaseConfig {
        match &self.database_url {
            Some(url) => DatabaseConfig::Postgres { url: url.clone() },
            None => DatabaseConfig::Sqlite {
                path: self.database_path(),
                options: self.sqlite.clone(),
            },
        }
    }

    /// The key for secrets kept at rest: `ORCH_SECRET_KEY`, else `<home>/secret.key` (created).
    pub fn secret_box(&self) -> anyhow::Result<orch_store::secret_box::SecretBox> {
        orch_store::secret_box::SecretBox::load(&self.home, self.secret_key.as_deref())
            .map_err(|e| anyhow::Error::from(crate::UserError::new(e.to_string())))
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.home.join("orch.db")
    }
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
