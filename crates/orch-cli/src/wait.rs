//! `orch run --wait`: run a workflow to the end in the foreground. With a daemon for the home
//! (or `--server`), the tasks go to it and this follows them; without one, embedded workers run
//! them here (like `orch serve`, stopping once the workflow is settled). Exits 0 when every
//! task is done, 1 naming the tasks that are not.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::client::Backend;
use crate::config::Settings;

/// How often the tasks are looked at.
const POLL: Duration = Duration::from_millis(200);

/// What the user is told when a command left tasks with nothing to run them.
pub fn no_daemon_note() -> &'static str {
    "note: no orch daemon is running for this home, so nothing runs these tasks yet; start one \
     with `orch serve` (in another terminal), or run a workflow to the end here with \
     `orch run --wait FILE`"
}

/// Follow (and, with no daemon, run) the tasks `ids` until none can move on by itself; returns
/// whether all are done.
pub async fn wait(settings: &Settings, backend: &Backend, ids: &[i64]) -> anyhow::Result<bool> {
    let shutdown = CancellationToken::new();
    let embedded = match backend {
        Backend::Store(app) => {
            let mut options = orch_server::ServeOptions::new(&settings.home);
            options.grace = Duration::from_secs(5);
            options.secret_box = Some(settings.secret_box()?);
            eprintln!(
                "orch run --wait: no daemon runs for {}; running the workflow here with {} \
                 embedded worker(s)",
                settings.home.display(),
                options.workers
            );
            Some(tokio::spawn(orch_server::serve(
                app.store().clone(),
                options,
                shutdown.clone(),
            )))
        }
        Backend::Api(_) => None,
    };
    let mut progress = Progress::new(ids.len());
    let settled = loop {
        let views = backend.task_views(ids).await?;
        progress.show(&views);
        if views.iter().all(settled) {
            break views;
        }
        if let Some(daemon) = &embedded {
            if daemon.is_finished() {
                break views;
            }
        }
        tokio::time::sleep(POLL).await;
    };
    progress.finish();
    shutdown.cancel();
    if let Some(daemon) = embedded {
        daemon
            .await
            .map_err(|e| anyhow::anyhow!("the embedded daemon: {e}"))?
            .map_err(|e| anyhow::anyhow!("the embedded daemon: {e}"))?;
    }
    let unfinished: Vec<&Value> = settled
        .iter()
        .filter(|t| t["status"].as_str() != Some("done"))
        .collect();
    if unfinished.is_empty() {
        eprintln!("orch run --wait: all {} task(s) done", settled.len());
        return Ok(true);
    }
    for task in &unfinished {
        eprintln!(
            "task {} ({}) {}{}",
            task["id"],
            name_of(task),
            task["status"].as_str().unwrap_or("?"),
            task["status_reason"]
                .as_str()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    eprintln!(
        "orch run --wait: {} of {} task(s) not done; see `orch task get <id>` and `orch task \
         logs <id>`",
        unfinished.len(),
        settled.len()
    );
    Ok(false)
}

/// Nothing will move this task on by itself: finished, or blocked by a dependency that is.
fn settled(task: &Value) -> bool {
    matches!(
        task["status"].as_str(),
        Some("done" | "failed" | "needs_review" | "cancelled" | "blocked")
    )
}

fn name_of(task: &Value) -> String {
    task["key"]
        .as_str()
        .or(task["title"].as_str())
        .unwrap_or("")
        .to_owned()
}

/// Progress on stderr: a spinner per task on a terminal, one line per change otherwise.
struct Progress {
    multi: Option<indicatif::MultiProgress>,
    bars: BTreeMap<i64, indicatif::ProgressBar>,
    last: BTreeMap<i64, String>,
}

impl Progress {
    fn new(tasks: usize) -> Progress {
        let tty = std::io::stderr().is_terminal() && tasks <= 40;
        Progress {
            multi: tty.then(indicatif::MultiProgress::new),
            bars: BTreeMap::new(),
            last: BTreeMap::new(),
        }
    }

    fn show(&mut self, views: &[Value]) {
        for task in views {
            let Some(id) = task["id"].as_i64() else {
                continue;
            };
            let status = task["status"].as_str().unwrap_or("?").to_owned();
            let line = format!(
                "{status} (attempt {})",
                task["run_count"].as_u64().unwrap_or(0).max(1)
            );
            match &self.multi {
                Some(multi) => {
                    let bar = self.bars.entry(id).or_insert_with(|| {
                        let bar = multi.add(indicatif::ProgressBar::new_spinner());
                        if let Ok(style) =
                            indicatif::ProgressStyle::with_template("{spinner} {prefix:<32} {msg}")
                        {
                            bar.set_style(style);
                        }
                        bar.set_prefix(format!("{id} {}", name_of(task)));
                        bar
                    });
                    bar.set_message(line);
                    if settled(task) {
                        bar.finish();
                    } else {
                        bar.tick();
                    }
                }
                None => {
                    if self.last.get(&id) != Some(&status) {
                        eprintln!("task {id} {}: {status}", name_of(task));
                    }
                }
            }
            self.last.insert(id, status);
        }
    }

    fn finish(&self) {
        for bar in self.bars.values() {
            bar.finish();
        }
    }
}
