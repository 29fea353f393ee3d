//! Preflight: is an agent's CLI installed, which version, and is it new enough?
//!
//! `orch agents` and `orch doctor` list this for every agent; the worker checks it when it
//! claims a task, so a task routed to a missing or too-old agent fails at once with the reason
//! instead of mid-run. Versions are read once per binary per process and cached: `--version`
//! of a Node CLI takes a few hundred milliseconds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;

use crate::cli::default_binary;
use crate::{AgentError, AgentsConfig};

/// What preflight found about one agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentInfo {
    /// The agent's name.
    pub name: String,
    /// The program it runs (empty for `sim`).
    pub binary: String,
    /// Where the program was found.
    pub path: Option<PathBuf>,
    /// The version it printed, if it could be read.
    pub version: Option<String>,
    /// The configured minimum, if any.
    pub min_version: Option<String>,
    /// Whether config lets it run.
    pub enabled: bool,
    /// Whether it can run now: enabled, installed, new enough.
    pub ready: bool,
    /// Why not, when it cannot.
    pub problem: Option<String>,
}

/// How long a CLI may take to print its version before it is reported as unreadable.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// Check every agent config knows, all at once (each version probe bounded by a few seconds),
/// in config's order.
pub async fn check_all(config: &AgentsConfig, env_path: Option<&str>) -> Vec<AgentInfo> {
    let mut set = tokio::task::JoinSet::new();
    for (index, name) in config.agent_names().into_iter().enumerate() {
        let (config, env_path) = (config.clone(), env_path.map(str::to_owned));
        set.spawn(async move { (index, check(&name, &config, env_path.as_deref()).await) });
    }
    let mut infos = Vec::new();
    while let Some(done) = set.join_next().await {
        if let Ok(found) = done {
            infos.push(found);
        }
    }
    infos.sort_by_key(|(index, _)| *index);
    infos.into_iter().map(|(_, info)| info).collect()
}

/// [`check_all`], remembering versions across processes in `cache` (a JSON file in the orch
/// home), keyed by each binary's path and modification time: a CLI is started for its version
/// only when it is new or changed. A cache that cannot be read or written is ignored.
pub async fn check_all_cached(
    config: &AgentsConfig,
    env_path: Option<&str>,
    cache: &std::path::Path,
) -> Vec<AgentInfo> {
    let remembered: HashMap<PathBuf, CachedVersion> = std::fs::read(cache)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    if let Ok(mut memory) = version_cache().lock() {
        for (path, entry) in &remembered {
            if modified_ns(path) == Some(entry.modified_ns) {
                memory
                    .entry(path.clone())
                    .or_insert_with(|| Some(entry.version.clone()));
            }
        }
    }
    let infos = check_all(config, env_path).await;
    let mut fresh: HashMap<PathBuf, CachedVersion> = HashMap::new();
    for info in &infos {
        if let (Some(path), Some(version)) = (&info.path, &info.version) {
            if let Some(modified_ns) = modified_ns(path) {
                let version = version.clone();
                fresh.insert(
                    path.clone(),
                    CachedVersion {
                        modified_ns,
                        version,
                    },
                );
            }
        }
    }
    if fresh != remembered {
        if let Err(e) = write_cache(cache, &fresh) {
            tracing::debug!(
                "could not write the agent version cache {}: {e}",
                cache.display()
            );
        }
    }
    infos
}

/// One remembered version: the binary's modification time (ns since the epoch) when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
struct CachedVersion {
    modified_ns: u64,
    version: String,
}

fn modified_ns(path: &std::path::Path) -> Option<u64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_nanos()).ok()
}

/// Replace the cache file whole (written beside it, then renamed), so a reader never sees
/// half of it.
fn write_cache(
    cache: &std::path::Path,
    entries: &HashMap<PathBuf, CachedVersion>,
) -> std::io::Result<()> {
    let dir = cache.parent().unwrap_or(std::path::Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer(&mut file, entries)?;
    file.persist(cache).map_err(|e| e.error)?;
    Ok(())
}

/// Check one agent. `env_path` is the `PATH` the agent would run with.
pub async fn check(name: &str, config: &AgentsConfig, env_path: Option<&str>) -> AgentInfo {
    let mut info = AgentInfo {
        name: name.to_owned(),
        binary: String::new(),
        path: None,
        version: None,
        min_version: config.min_versions.get(name).cloned(),
        enabled: config.check_enabled(name).is_ok(),
        ready: false,
        problem: None,
    };
    if name == "sim" {
        info.version = Some(env!("CARGO_PKG_VERSION").to_owned());
        info.ready = true;
        return info;
    }
    let binary = match (config.settings(name), config.commands.get(name)) {
        (Some(settings), _) => settings
            .binary
            .clone()
            .unwrap_or_else(|| default_binary(name).to_owned()),
        (None, Some(command)) => command.argv.first().cloned().unwrap_or_default(),
        (None, None) => {
            info.problem = Some(format!("no agent is called `{name}`"));
            return info;
        }
    };
    info.binary = binary.clone();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let found = which::which_in(&binary, env_path.map(str::to_owned), cwd);
    let path = match found {
        Ok(path) => path,
        Err(_) => {
            info.problem = Some(format!(
                "`{binary}` is not installed (not found on PATH); install it or set `binary` under `[agents.{name}]`"
            ));
            return info;
        }
    };
    info.path = Some(path.clone());
    info.version = version_of(&path).await;
    if let Some(minimum) = &info.min_version {
        match &info.version {
            Some(found) if !at_least(found, minimum) => {
                info.problem = Some(format!(
                    "`{binary}` is version {found}, older than the configured minimum {minimum}; upgrade it"
                ));
            }
            None => {
                info.problem = Some(format!(
                    "the version of `{binary}` could not be read, and a minimum ({minimum}) is configured"
                ));
            }
            Some(_) => {}
        }
    }
    if info.problem.is_none() {
        if let Err(e) = config.check_enabled(name) {
            info.problem = Some(e.to_string());
        }
    }
    info.ready = info.problem.is_none();
    info
}

/// The error for an agent that is not ready, for claim-time refusal.
pub fn require_ready(info: &AgentInfo) -> Result<(), AgentError> {
    match &info.problem {
        None => Ok(()),
        Some(problem) => Err(AgentError::Unavailable {
            agent: info.name.clone(),
            reason: problem.clone(),
        }),
    }
}

fn version_cache() -> &'static Mutex<HashMap<PathBuf, Option<String>>> {
    // A std mutex: held only to read or insert, never across an await.
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Option<String>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

async fn version_of(path: &PathBuf) -> Option<String> {
    if let Some(cached) = version_cache().lock().ok()?.get(path) {
        return cached.clone();
    }
    // Through the one spawn module with a cleared environment: a version check sees none of
    // orch's tokens or keys, only what finding and starting the CLI needs.
    let env = ["PATH", "HOME", "LANG"]
        .into_iter()
        .filter_map(|name| Some((name, std::env::var_os(name)?)));
    let output = tokio::time::timeout(
        VERSION_TIMEOUT,
        orch_process::Spawn::new(path)
            .arg("--version")
            .envs(env)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let version = parse_version(&text);
    if let Ok(mut cache) = version_cache().lock() {
        cache.insert(path.clone(), version.clone());
    }
    version
}

/// The first `N.N[.N...]` in a `--version` output (`2.1.197 (Claude Code)`, `codex-cli 0.169.0`).
pub fn parse_version(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .map(|word| word.trim_start_matches('v'))
        .find(|word| {
            let mut parts = word.split('.');
            let first_ok = parts
                .next()
                .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            first_ok && word.contains('.')
        })
        .map(str::to_owned)
}

/// Whether `found` >= `minimum`, comparing dot-separated numbers (not `semver`: CLIs and
/// configured minimums often give two parts, `2.1`; a pre-release suffix such as
/// `-beta.1` is ignored).
pub fn at_least(found: &str, minimum: &str) -> bool {
    fn numbers(v: &str) -> Vec<u64> {
        v.split(['-', '+'])
            .next()
            .unwrap_or("")
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    }
    let (mut a, mut b) = (numbers(found), numbers(minimum));
    let len = a.len().max(b.len());
    a.resize(len, 0);
    b.resize(len, 0);
    a >= b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_found_in_real_outputs() {
        assert_eq!(
            parse_version("2.1.197 (Claude Code)").as_deref(),
            Some("2.1.197")
        );
        assert_eq!(
            parse_version("codex-cli 0.169.0").as_deref(),
            Some("0.169.0")
        );
        assert_eq!(parse_version("1.18.33\n").as_deref(), Some("1.18.33"));
        assert_eq!(parse_version("v20.20.2").as_deref(), Some("20.20.2"));
        assert_eq!(parse_version("no version here"), None);
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(at_least("2.1.197", "2.1.9"));
        assert!(at_least("2.1", "2.1.0"));
        assert!(!at_least("0.99.0", "0.169.0"));
        assert!(at_least("1.0.0-beta.1", "1.0.0"));
    }

    #[tokio::test]
    async fn a_missing_binary_is_reported_with_what_to_do() {
        let mut config = AgentsConfig {
            enable_real_cli: true,
            ..AgentsConfig::default()
        };
        config.claude.binary = Some("orch-no-such-binary".into());
        let info = check("claude", &config, Some("/nonexistent")).await;
        assert!(!info.ready);
        let problem = info.problem.unwrap();
        assert!(problem.contains("not installed"), "{problem}");
    }

    #[tokio::test]
    async fn sim_is_always_ready() {
        let info = check("sim", &AgentsConfig::default(), None).await;
        assert!(info.ready && info.enabled);
    }
}
