//! The bundle tar reader of `PUT /v1/worker/runs/{run}/bundle`: whatever the tar holds, nothing
//! is written outside the staging directory, only regular files are made inside it, the paths
//! it returns are those files (each once), and a bad tar is refused as the client's fault
//! (`bundle_invalid`, 422), not as an internal error.
#![no_main]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use orch_server::api::error::ApiError;

/// Every path under `root` (not following links), with whether it is a regular file, a
/// directory or something else.
fn tree(root: &Path) -> BTreeSet<(PathBuf, &'static str)> {
    let mut found = BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)
            .expect("read a directory the target made")
            .flatten()
        {
            let kind = entry.file_type().expect("stat a file the target made");
            let path = entry.path();
            let kind = if kind.is_dir() {
                pending.push(path.clone());
                "dir"
            } else if kind.is_file() {
                "file"
            } else {
                "other"
            };
            found.insert((path, kind));
        }
    }
    found
}

fuzz_target!(|tar: &[u8]| {
    let root = tempfile::tempdir().expect("make a temporary directory");
    let outside = root.path().join("runs");
    let staging = outside.join("staging");
    fs::create_dir_all(&staging).expect("make the staging directory");
    fs::write(outside.join("result.json"), b"{}").expect("write a file beside it");
    let before = tree(root.path());

    let result = orch_server::api::fuzz::unpack_bundle(tar, &staging);

    let after = tree(root.path());
    for (path, kind) in &after {
        if path.starts_with(&staging) && path != &staging {
            assert!(
                *kind != "other",
                "{} was made and is not a regular file",
                path.display()
            );
        } else {
            assert!(
                before.contains(&(path.clone(), kind)),
                "{} was made outside",
                path.display()
            );
        }
    }
    assert_eq!(
        fs::read(outside.join("result.json")).expect("the file beside is still there"),
        b"{}",
        "the file beside the staging directory was changed"
    );
    match result {
        Ok(files) => {
            let unique: BTreeSet<&PathBuf> = files.iter().collect();
            assert_eq!(
                unique.len(),
                files.len(),
                "a path is returned twice: {files:?}"
            );
            for file in &files {
                let kind = fs::symlink_metadata(staging.join(file)).map(|m| m.is_file());
                assert!(
                    kind.unwrap_or(false),
                    "{} is not a file in staging",
                    file.display()
                );
            }
        }
        Err(ApiError::BundleInvalid(_)) => {}
        Err(other) => panic!("a bad tar was refused as {other:?}, not bundle_invalid"),
    }
});
