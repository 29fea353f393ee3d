//! A whole home to an archive file and back: the store's rows (through
//! [`Store::export_archive`] / [`Store::import_archive`], so any backend) and the bundles under
//! `<home>/runs`.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::file::{
    files_under, invalid, io, read_archive, read_rows, ArchiveWriter, Entry, TableSpool,
    BUNDLES_DIR,
};
use super::{Manifest, Progress, Row, RowCounts, Stage, Table, FORMAT_VERSION, PROGRESS_EVERY};
use crate::{Store, StoreError};

/// Rows in flight between the database and the file.
const CHANNEL_ROWS: usize = 1024;

/// The import's reader stopped because the store stopped taking rows.
const STOPPED: &str = "the import stopped";

/// The directory an import unpacks bundles into before they are moved into place.
const STAGING_DIR: &str = ".import-staging";

/// What [`import_home`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport {
    /// The archive's manifest.
    pub manifest: Manifest,
    /// Rows imported per table.
    pub rows: RowCounts,
}

fn joined<T>(result: Result<T, tokio::task::JoinError>) -> Result<T, StoreError> {
    result.map_err(|e| StoreError::Unavailable(format!("an archive thread failed: {e}")))
}

/// A counter that reports every [`PROGRESS_EVERY`] rows.
struct Counter {
    progress: Progress,
    stage: Stage,
    total: Option<u64>,
    done: u64,
}

impl Counter {
    fn new(progress: &Progress, stage: Stage, total: Option<u64>) -> Counter {
        Counter {
            progress: progress.clone(),
            stage,
            total,
            done: 0,
        }
    }

    fn add(&mut self) {
        self.done += 1;
        if self.done.is_multiple_of(PROGRESS_EVERY) {
            (self.progress)(self.stage, self.done, self.total);
        }
    }

    fn end(&self) {
        (self.progress)(self.stage, self.done, self.total);
    }
}

/// Write the whole home, `store`'s rows and `<home>/runs`, to the archive `dest` (replacing it
/// only once complete). Stop the daemon first: rows come from one snapshot, but bundles being
/// written meanwhile may or may not be included.
pub async fn export_home(
    store: &Store,
    home: &Path,
    dest: &Path,
    progress: &Progress,
) -> Result<Manifest, StoreError> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let spool = tempfile::Builder::new()
        .prefix(".orch-export-")
        .tempdir_in(&parent)
        .map_err(io(format!(
            "create a temporary directory in {}",
            parent.display()
        )))?;
    let spool_dir = spool.path().to_owned();
    let (tx, mut rx) = mpsc::channel::<Row>(CHANNEL_ROWS);
    let mut counter = Counter::new(progress, Stage::Export, None);
    let writer = tokio::task::spawn_blocking(move || -> Result<RowCounts, StoreError> {
        let mut counts = RowCounts::new();
        let mut current: Option<(Table, TableSpool)> = None;
        while let Some(row) = rx.blocking_recv() {
            let table = row.table();
            if current.as_ref().map(|(t, _)| *t) != Some(table) {
                if let Some((_, done)) = current.take() {
                    done.finish()?;
                }
                current = Some((table, TableSpool::create(spool_path(&spool_dir, table))?));
            }
            if let Some((_, out)) = current.as_mut() {
                out.push(&row)?;
            }
            *counts.entry(table).or_default() += 1;
            counter.add();
        }
        if let Some((_, done)) = current.take() {
            done.finish()?;
        }
        counter.end();
        Ok(counts)
    });
    let exported = store.export_archive(tx).await;
    // The writer's own failure (a full disk) is why the store stopped, when both failed.
    let written = joined(writer.await)??;
    let mut exported = exported?;
    exported.retain(|_, n| *n > 0);
    if written != exported {
        return Err(invalid(format!(
            "the rows written ({written:?}) are not the rows read ({exported:?})"
        )));
    }
    let manifest_rows: RowCounts = Table::ALL
        .into_iter()
        .map(|t| (t, exported.get(&t).copied().unwrap_or(0)))
        .collect();
    let backend = store.backend_name().to_owned();
    let home = home.to_owned();
    let dest = dest.to_owned();
    joined(
        tokio::task::spawn_blocking(move || {
            let runs = home.join(BUNDLES_DIR);
            let bundles = files_under(&runs)?;
            let manifest = Manifest {
                format_version: FORMAT_VERSION,
                orch_version: env!("CARGO_PKG_VERSION").to_owned(),
                source_backend: backend,
                created_at: crate::wall_clock().0,
                rows: manifest_rows,
                bundle_files: bundles.len() as u64,
            };
            let mut writer = ArchiveWriter::create(&dest, &manifest)?;
            let mut body = || -> Result<(), StoreError> {
                for table in Table::ALL {
                    let path = spool_path(spool.path(), table);
                    if !path.exists() {
                        TableSpool::create(path.clone())?.finish()?;
                    }
                    writer.append_table(table, &path)?;
                }
                writer.append_bundles(&runs, &bundles)
            };
            match body() {
                Ok(()) => writer.finish()?,
                Err(e) => {
                    writer.abandon();
                    return Err(e);
                }
            }
            drop(spool);
            Ok(manifest)
        })
        .await,
    )?
}

fn spool_path(dir: &Path, table: Table) -> PathBuf {
    dir.join(format!("{}.jsonl", table.name()))
}

/// Import the archive `src` into `store` and `home`: refused unless the database is empty and
/// the home has no bundles. The whole archive is read and checked first (manifest version, every
/// row, the counts, gzip's checksum) while its bundles are unpacked into a staging directory;
/// then the rows are inserted in one transaction; then the bundles are moved into
/// `<home>/runs`. A damaged archive changes nothing.
pub async fn import_home(
    store: &Store,
    home: &Path,
    src: &Path,
    progress: &Progress,
) -> Result<ImportReport, StoreError> {
    let runs = home.join(BUNDLES_DIR);
    let staging = home.join(STAGING_DIR);
    if !store.is_empty().await? {
        let staged = staging.join(BUNDLES_DIR);
        let hint = if staged.exists() && !runs.exists() {
            format!(
                " (an earlier import committed its rows but was stopped before it moved the \
                 bundles: move {} to {})",
                staged.display(),
                runs.display()
            )
        } else {
            String::new()
        };
        return Err(StoreError::Invalid {
            field: "database".into(),
            reason: format!(
                "the target database already holds data; import only into an empty database \
                 (a new home, or a new PostgreSQL database){hint}"
            ),
        });
    }
    if !files_under(&runs)?.is_empty() {
        return Err(StoreError::Invalid {
            field: "home".into(),
            reason: format!(
                "{} already holds run bundles; import only into a new home",
                runs.display()
            ),
        });
    }
    let report = match import_staged(store, &staging, src, progress).await {
        Ok(report) => report,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    // The rows are committed: on a failure here the staged bundles stay, and the error says
    // where to move them.
    move_bundles(&staging, &runs)?;
    let _ = std::fs::remove_dir_all(&staging);
    Ok(report)
}

async fn import_staged(
    store: &Store,
    staging: &Path,
    src: &Path,
    progress: &Progress,
) -> Result<ImportReport, StoreError> {
    match std::fs::remove_dir_all(staging) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("remove {}", staging.display()))(e)),
    }
    std::fs::create_dir_all(staging).map_err(io(format!("create {}", staging.display())))?;
    // Pass 1: check everything and unpack the bundles.
    let (src_path, staged_runs) = (src.to_owned(), staging.join(BUNDLES_DIR));
    let counter = Counter::new(progress, Stage::Check, None);
    let manifest = joined(
        tokio::task::spawn_blocking(move || check_and_unpack(&src_path, &staged_runs, counter))
            .await,
    )??;
    // Pass 2: the rows, into the database in one transaction.
    let (tx, rx) = mpsc::channel::<Row>(CHANNEL_ROWS);
    let src_path = src.to_owned();
    let mut counter = Counter::new(progress, Stage::Insert, Some(manifest.rows.values().sum()));
    let reader = tokio::task::spawn_blocking(move || {
        let read = read_archive(&src_path, |entry| match entry {
            Entry::Table(table, reader) => read_rows(table, reader, |row| {
                counter.add();
                tx.blocking_send(row)
                    .map_err(|_| StoreError::Unavailable(STOPPED.into()))
            })
            .map(|_| ()),
            Entry::Bundle(..) => Ok(()),
        });
        counter.end();
        read
    });
    let imported = store.import_archive(rx, manifest.rows.clone()).await;
    let read = joined(reader.await)?;
    let rows = match (imported, read) {
        (Ok(rows), Ok(_)) => rows,
        // The reader's error explains why the rows fell short, unless the store stopped first.
        (Err(stored), Err(StoreError::Unavailable(why))) if why == STOPPED => return Err(stored),
        (Err(_), Err(read)) => return Err(read),
        (Err(stored), Ok(_)) => return Err(stored),
        // Every row arrived and was committed; the file changed after the check (its end
        // no longer reads). What was imported is what the check passed.
        (Ok(rows), Err(read)) => {
            tracing::warn!("the archive changed while it was imported: {read}");
            rows
        }
    };
    Ok(ImportReport { manifest, rows })
}

/// Read the whole archive: every row must parse and the counts must match the manifest.
/// Bundle files are unpacked under `runs`.
fn check_and_unpack(src: &Path, runs: &Path, mut counter: Counter) -> Result<Manifest, StoreError> {
    let mut counts = RowCounts::new();
    let mut bundles = 0u64;
    let manifest = read_archive(src, |entry| match entry {
        Entry::Table(table, reader) => {
            let n = read_rows(table, reader, |_| {
                counter.add();
                Ok(())
            })?;
            *counts.entry(table).or_default() += n;
            Ok(())
        }
        Entry::Bundle(relative, mut entry) => {
            let target = runs.join(&relative);
            if let Some(dir) = target.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io(format!("create {}", dir.display())))?;
            }
            // Written as a private file whatever mode the archive says (bundles hold logs).
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&target)
                .map_err(io(format!("create {}", target.display())))?;
            std::io::copy(&mut entry, &mut out).map_err(|e| {
                invalid(format!(
                    "it is damaged (the bundle file {} cannot be read: {e}); nothing was imported",
                    relative.display()
                ))
            })?;
            bundles += 1;
            Ok(())
        }
    })?;
    counter.end();
    for table in Table::ALL {
        let (want, got) = (
            manifest.rows.get(&table).copied().unwrap_or(0),
            counts.get(&table).copied().unwrap_or(0),
        );
        if want != got {
            return Err(invalid(format!(
                "its manifest says table {table} has {want} row(s) but it holds {got}; the \
                 archive is incomplete, nothing was imported"
            )));
        }
    }
    if bundles != manifest.bundle_files {
        return Err(invalid(format!(
            "its manifest says it holds {} bundle file(s) but it holds {bundles}; the archive is \
             incomplete, nothing was imported",
            manifest.bundle_files
        )));
    }
    Ok(manifest)
}

/// Move the unpacked bundles to `<home>/runs` (an empty one is replaced).
fn move_bundles(staging: &Path, runs: &Path) -> Result<(), StoreError> {
    let staged = staging.join(BUNDLES_DIR);
    if !staged.exists() {
        return Ok(());
    }
    if runs.exists() {
        // Checked empty of files before the import; only empty directories can be here.
        std::fs::remove_dir_all(runs).map_err(io(format!("remove {}", runs.display())))?;
    }
    std::fs::rename(&staged, runs).map_err(io(format!(
        "the rows are imported, but the bundles could not be moved from {} to {}; move them by \
         hand",
        staged.display(),
        runs.display()
    )))
}
