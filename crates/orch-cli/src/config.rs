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
        let database_url = env_text("ORCH_DATABASE_URL")?;
        if let Some(url) = &database_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!("ORCH_DATABASE_URL={url} is not a PostgreSQL URL; write it like `postgres://user@host/db`, or unset it to use the SQLite file in the home");
            }
        }
        Ok(Settings {
            home,
            sqlite,
            database_url,
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

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.home.join("orch.db")
    }
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
