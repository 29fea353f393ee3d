//! `orch admin export FILE` / `orch admin import FILE`: a whole home to one archive and back
//! (`orch_store::archive`), for moving to another machine or from SQLite to PostgreSQL.

use anyhow::Context;
use orch_store::archive::{self, Manifest, Progress, RowCounts, Stage, Table};
use serde_json::json;

use crate::cli::{AdminCommand, ArchiveArgs};
use crate::commands::{doctor_check, open_store};
use crate::config::{self, Settings};
use crate::output::print_json;
use crate::UserError;

/// Run an admin command; false when the import's check found problems.
pub async fn admin(settings: &Settings, command: AdminCommand) -> anyhow::Result<bool> {
    match command {
        AdminCommand::Export(args) => export(settings, args).await.map(|()| true),
        AdminCommand::Import(args) => import(settings, args).await,
    }
}

/// A spinner on stderr with the rows done so far (drawn only on a terminal), and the
/// [`Progress`] that moves it.
fn progress_bar() -> (indicatif::ProgressBar, Progress) {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let shown = bar.clone();
    let progress: Progress = std::sync::Arc::new(move |stage, done, total| {
        let what = match stage {
            Stage::Export => "exporting",
            Stage::Check => "checking the archive",
            Stage::Insert => "importing",
        };
        shown.set_message(match total {
            Some(total) => format!("{what}: {done} of {total} rows"),
            None => format!("{what}: {done} rows"),
        });
    });
    (bar, progress)
}

/// The home's daemon lock, so no `orch serve` changes the home while it is copied.
fn lock(settings: &Settings, what: &str) -> anyhow::Result<std::fs::File> {
    orch_server::lock_home(&settings.home).map_err(|e| match e {
        orch_server::ServeError::AlreadyRunning(home) => UserError::new(format!(
            "`orch serve` is running in {}; stop it (and its remote workers) before {what}",
            home.display()
        ))
        .into(),
        other => anyhow::Error::from(other),
    })
}

async fn export(settings: &Settings, args: ArchiveArgs) -> anyhow::Result<()> {
    if let Some(path) = settings.database_path().filter(|path| !path.exists()) {
        return Err(UserError::new(format!(
            "no orch database at {}; nothing to export (check --home or --database)",
            path.display()
        ))
        .into());
    }
    let file = config::absolute(&args.file)?;
    let _lock = lock(settings, "exporting")?;
    let store = open_store(settings).await?;
    let (bar, progress) = progress_bar();
    let manifest = archive::export_home(&store, &settings.home, &file, &progress).await;
    bar.finish_and_clear();
    let manifest = manifest.with_context(|| {
        format!(
            "export the home {} to {}",
            settings.home.display(),
            file.display()
        )
    })?;
    store.close().await;
    if args.json {
        print_json(&json!({ "file": file, "manifest": manifest }))
    } else {
        println!(
            "exported {} ({} database) to {}: {}, {} bundle file(s)",
            settings.home.display(),
            manifest.source_backend,
            file.display(),
            summary(&manifest.rows),
            manifest.bundle_files
        );
        Ok(())
    }
}

async fn import(settings: &Settings, args: ArchiveArgs) -> anyhow::Result<bool> {
    let file = config::absolute(&args.file)?;
    if !file.is_file() {
        return Err(UserError::new(format!(
            "{} is not a file; give an archive written by `orch admin export`",
            file.display()
        ))
        .into());
    }
    let _lock = lock(settings, "importing")?;
    let store = open_store(settings).await?;
    let (bar, progress) = progress_bar();
    let report = archive::import_home(&store, &settings.home, &file, &progress).await;
    bar.finish_and_clear();
    let report = report.with_context(|| {
        format!(
            "import {} into the home {}",
            file.display(),
            settings.home.display()
        )
    })?;
    let doctor = doctor_check(settings, &store, false).await?;
    store.close().await;
    if args.json {
        print_json(&json!({
            "file": file,
            "manifest": report.manifest,
            "imported": report.rows,
            "doctor": doctor.to_json(),
        }))?;
    } else {
        print_imported(&report.manifest, &report.rows, settings, &file);
        doctor.print();
    }
    Ok(doctor.ok())
}

fn print_imported(
    manifest: &Manifest,
    rows: &RowCounts,
    settings: &Settings,
    file: &std::path::Path,
) {
    println!(
        "imported {} (from a {} database, orch {}) into {}: {}, {} bundle file(s)",
        file.display(),
        manifest.source_backend,
        manifest.orch_version,
        settings.home.display(),
        summary(rows),
        manifest.bundle_files
    );
}

/// `projects: 1, tasks: 12, ...` for the tables that have rows.
fn summary(rows: &RowCounts) -> String {
    let parts: Vec<String> = Table::ALL
        .into_iter()
        .filter_map(|t| {
            rows.get(&t)
                .filter(|n| **n > 0)
                .map(|n| format!("{t}: {n}"))
        })
        .collect();
    if parts.is_empty() {
        "no rows".to_owned()
    } else {
        parts.join(", ")
    }
}
