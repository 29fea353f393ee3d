//! The archive file: one gzip-compressed tar holding, in this order,
//! - `manifest.json` ([`Manifest`]: format version, orch version, source backend, row counts,
//!   bundle file count, creation time);
//! - `tables/<table>.jsonl`, one JSON object per row, for every table in [`Table::ALL`] order
//!   (empty tables too);
//! - `runs/<task>/<attempt>/...`, the home's run bundles, byte for byte.
//!
//! It is written to a temporary file beside the destination (mode 0600: it holds token hashes
//! and whatever the bundles hold) and renamed over it at the end, so a crash leaves no half
//! archive under the destination's name. gzip's trailing checksum is read on every pass, so a
//! truncated or corrupted file is refused before anything is imported.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use super::{Manifest, Row, Table};
use crate::StoreError;

/// The manifest's entry name.
pub const MANIFEST: &str = "manifest.json";
/// The directory of the table files in an archive.
pub const TABLES_DIR: &str = "tables";
/// The bundles' directory, both in the home and in an archive.
pub const BUNDLES_DIR: &str = "runs";

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

pub(crate) fn invalid(reason: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field: "archive".into(),
        reason: reason.into(),
    }
}

/// Every regular file under `root`, relative to it, sorted (none if `root` does not exist).
/// Symlinks are left out: orch writes none in bundles, and one could point anywhere.
pub fn files_under(root: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(relative) = dirs.pop() {
        let dir = root.join(&relative);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && relative.as_os_str().is_empty() =>
            {
                return Ok(found)
            }
            Err(e) => return Err(io(format!("list {}", dir.display()))(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(format!("list {}", dir.display())))?;
            let kind = entry
                .file_type()
                .map_err(io(format!("stat {}", entry.path().display())))?;
            let path = relative.join(entry.file_name());
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// An archive being written to a temporary file; [`ArchiveWriter::finish`] renames it into
/// place.
pub struct ArchiveWriter {
    builder: tar::Builder<GzEncoder<BufWriter<File>>>,
    temp: PathBuf,
    dest: PathBuf,
}

impl ArchiveWriter {
    /// Start an archive for `dest`, writing the manifest first.
    pub fn create(dest: &Path, manifest: &Manifest) -> Result<ArchiveWriter, StoreError> {
        let name = dest
            .file_name()
            .ok_or_else(|| invalid(format!("{} is not a file name", dest.display())))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".tmp-{}", std::process::id()));
        let temp = dest.with_file_name(temp_name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io(format!("create {}", temp.display())))?;
        let mut builder = tar::Builder::new(GzEncoder::new(
            BufWriter::new(file),
            flate2::Compression::default(),
        ));
        builder.follow_symlinks(false);
        builder.mode(tar::HeaderMode::Deterministic);
        let mut writer = ArchiveWriter {
            builder,
            temp,
            dest: dest.to_owned(),
        };
        let text = serde_json::to_vec_pretty(manifest)
            .map_err(|e| invalid(format!("the manifest cannot be written: {e}")))?;
        writer.append_bytes(MANIFEST, &text)?;
        Ok(writer)
    }

    fn append_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        self.builder
            .append_data(&mut header, name, bytes)
            .map_err(io(format!("write {}", self.temp.display())))
    }

    /// Add a table's JSON Lines file, written beforehand to `spool`.
    pub fn append_table(&mut self, table: Table, spool: &Path) -> Result<(), StoreError> {
        let mut file = File::open(spool).map_err(io(format!("open {}", spool.display())))?;
        let name = format!("{TABLES_DIR}/{}.jsonl", table.name());
        self.builder
            .append_file(name, &mut file)
            .map_err(io(format!("write {}", self.temp.display())))
    }

    /// Add the bundle files `relative` (from [`files_under`]) of `runs`, the home's bundle
    /// directory.
    pub fn append_bundles(&mut self, runs: &Path, relative: &[PathBuf]) -> Result<(), StoreError> {
        for path in relative {
            self.builder
                .append_path_with_name(runs.join(path), Path::new(BUNDLES_DIR).join(path))
                .map_err(io(format!("archive {}", runs.join(path).display())))?;
        }
        Ok(())
    }

    /// Finish the archive: flush, sync, and rename it to its destination.
    pub fn finish(self) -> Result<(), StoreError> {
        let temp = self.temp.clone();
        let result = self.finish_inner();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    fn finish_inner(self) -> Result<(), StoreError> {
        let context = format!("write {}", self.temp.display());
        let gz = self.builder.into_inner().map_err(io(context.clone()))?;
        let buffered = gz.finish().map_err(io(context.clone()))?;
        let file = buffered
            .into_inner()
            .map_err(|e| io(context.clone())(e.into_error()))?;
        file.sync_all().map_err(io(context))?;
        std::fs::rename(&self.temp, &self.dest).map_err(io(format!(
            "rename {} to {}",
            self.temp.display(),
            self.dest.display()
        )))?;
        if let Some(dir) = self.dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }

    /// Remove the temporary file of an archive that will not be finished.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// What an entry of an archive is.
pub enum Entry<'a, R: Read> {
    /// A table's rows.
    Table(Table, tar::Entry<'a, R>),
    /// A bundle file, with its path under `runs/`.
    Bundle(PathBuf, tar::Entry<'a, R>),
}

/// Read an archive: check its manifest (the first entry, of a format this orch reads), then
/// hand every other entry to `each`; the whole file is read to its end, so gzip's checksum is
/// checked. Returns the manifest.
pub fn read_archive(
    path: &Path,
    mut each: impl FnMut(Entry<'_, GzDecoder<BufReader<File>>>) -> Result<(), StoreError>,
) -> Result<Manifest, StoreError> {
    let file = File::open(path).map_err(io(format!("open {}", path.display())))?;
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let damaged = |e: std::io::Error| {
        invalid(format!(
            "{} is damaged or not an orch archive ({e}); nothing was imported",
            path.display()
        ))
    };
    let manifest = {
        let mut entries = archive.entries().map_err(damaged)?;
        let mut first = match entries.next() {
            Some(entry) => entry.map_err(damaged)?,
            None => return Err(damaged(std::io::ErrorKind::UnexpectedEof.into())),
        };
        if first.path().map_err(damaged)?.as_os_str() != MANIFEST {
            return Err(invalid(format!(
                "{} does not start with {MANIFEST}; it is not an orch archive, nothing was imported",
                path.display()
            )));
        }
        let mut text = String::new();
        first.read_to_string(&mut text).map_err(damaged)?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
            invalid(format!(
                "its {MANIFEST} cannot be read: {e}; nothing was imported"
            ))
        })?;
        if manifest.format_version != super::FORMAT_VERSION {
            return Err(invalid(format!(
                "it has format version {} (written by orch {}), and this orch reads version {}; \
                 nothing was imported: import it with an orch that reads that version",
                manifest.format_version,
                manifest.orch_version,
                super::FORMAT_VERSION
            )));
        }
        for entry in entries {
            let entry = entry.map_err(damaged)?;
            let name = entry.path().map_err(damaged)?.into_owned();
            let kind = entry.header().entry_type();
            if let Ok(rest) = name.strip_prefix(BUNDLES_DIR) {
                if !safe_relative(rest) {
                    return Err(invalid(format!(
                        "it holds the entry {}, which points outside the home; nothing was imported",
                        name.display()
                    )));
                }
                if kind.is_dir() {
                    continue;
                }
                if !kind.is_file() {
                    return Err(invalid(format!(
                        "its entry {} is not a regular file (bundles hold only files); nothing was imported",
                        name.display()
                    )));
                }
                each(Entry::Bundle(rest.to_owned(), entry))?;
                continue;
            }
            let table = name
                .strip_prefix(TABLES_DIR)
                .ok()
                .and_then(|rest| rest.to_str())
                .and_then(|rest| rest.strip_suffix(".jsonl"))
                .and_then(Table::from_name);
            match table {
                Some(table) => each(Entry::Table(table, entry))?,
                None => {
                    return Err(invalid(format!(
                    "it holds the entry {}, which this orch does not know; nothing was imported",
                    name.display()
                )))
                }
            }
        }
        manifest
    };
    // The tar's end marker may come before gzip's trailer: read to the end so its checksum and
    // length are checked.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(damaged)?;
    Ok(manifest)
}

/// Parse a table file's lines, handing each row to `each`; returns the number of rows.
pub fn read_rows(
    table: Table,
    reader: impl Read,
    mut each: impl FnMut(Row) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut count = 0;
    for (index, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(|e| {
            invalid(format!(
                "it is damaged (tables/{table}.jsonl cannot be read: {e}); nothing was imported"
            ))
        })?;
        let row = table.parse_row(&line).map_err(|e| {
            invalid(format!(
                "tables/{table}.jsonl line {}: {e}; nothing was imported",
                index + 1
            ))
        })?;
        each(row)?;
        count += 1;
    }
    Ok(count)
}

/// Writes one table's rows as JSON Lines to a spool file.
pub struct TableSpool {
    out: BufWriter<File>,
    path: PathBuf,
}

impl TableSpool {
    /// Create the spool file.
    pub fn create(path: PathBuf) -> Result<TableSpool, StoreError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(format!("create {}", path.display())))?;
        Ok(TableSpool {
            out: BufWriter::new(file),
            path,
        })
    }

    /// Append a row.
    pub fn push(&mut self, row: &Row) -> Result<(), StoreError> {
        let line = row
            .to_json_line()
            .map_err(|e| invalid(format!("a {} row cannot be written: {e}", row.table())))?;
        self.out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(io(format!("write {}", self.path.display())))
    }

    /// Flush it.
    pub fn finish(mut self) -> Result<(), StoreError> {
        self.out
            .flush()
            .map_err(io(format!("write {}", self.path.display())))
    }
}

/// Whether a path inside an archive stays inside the directory it is unpacked in.
fn safe_relative(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}
