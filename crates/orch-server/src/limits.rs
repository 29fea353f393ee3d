//! The claim limits of a daemon: `[concurrency]` and `[budgets]` of `<home>/config.toml`, set
//! on the daemon's store handle (which its embedded workers and the remote workers' claims both
//! go through) at start, and again whenever the file changes, so raising a limit needs no
//! restart. Every daemon sharing a database should have the same limits: each claims under its
//! own.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use orch_core::limits::ClaimLimits;
use orch_store::Store;
use tokio_util::sync::CancellationToken;

/// How often the file is looked at for a change.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The limits `<home>/config.toml` sets (none when it has no such sections).
pub fn load(home: &Path) -> Result<ClaimLimits, String> {
    let config =
        orch_worker::project::ProjectConfig::load_global(home).map_err(|e| e.to_string())?;
    config.claim_limits()
}

fn stamp(file: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(file).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Re-read the limits when `config.toml` changes, until `stop`. A file that stops parsing keeps
/// the limits in force (and says why once per change).
pub async fn watch(store: Store, home: PathBuf, stop: CancellationToken) {
    let file = home.join("config.toml");
    let mut seen = stamp(&file);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RELOAD_EVERY) => {}
        }
        let now = stamp(&file);
        if now == seen {
            continue;
        }
        seen = now;
        match load(&home) {
            Ok(limits) => {
                tracing::info!("claim limits reloaded from {}", file.display());
                store.set_claim_limits(limits);
            }
            Err(e) => tracing::warn!("claim limits unchanged: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_global_file_sets_the_limits_and_a_project_file_may_not() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("config.toml"),
            "[concurrency]\nproject = 3\nagents = { claude = 2 }\nlabels = { deploy = 1 }\n\
             [budgets]\ntime_zone = \"Europe/Paris\"\n[budgets.agents.claude]\ncost_usd = 5.0\n",
        )
        .unwrap();
        let limits = load(home.path()).unwrap();
        assert_eq!(limits.concurrency.agents["claude"], 2);
        assert_eq!(limits.concurrency.labels["deploy"], 1);
        assert_eq!(limits.project_running("any"), Some(3));
        assert_eq!(limits.budgets.agents["claude"].cost_usd, Some(5.0));
        assert_eq!(limits.zone().name(), "Europe/Paris");
        let project = tempfile::tempdir().unwrap();
        std::fs::write(
            project.path().join(".orch.toml"),
            "[concurrency]\nproject = 100\n",
        )
        .unwrap();
        let err = orch_worker::project::ProjectConfig::load_merged(home.path(), project.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("may only be set in the global config.toml"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_limit_names_the_key() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("config.toml"),
            "[budgets]\ntime_zone = \"Nowhere/Land\"\n",
        )
        .unwrap();
        let err = load(home.path()).unwrap_err();
        assert!(err.contains("budgets.time_zone"), "{err}");
        std::fs::write(
            home.path().join("config.toml"),
            "[concurrency]\nagents = { claude = -1 }\n",
        )
        .unwrap();
        assert!(load(home.path()).is_err());
    }
}
