//! The bundle tar reader of `PUT /v1/worker/runs/{run}/bundle` on hand-made tars: the cases the
//! `bundle_tar` fuzz target checks, kept as regression tests.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use orch_server::api::error::ApiError;
use orch_server::api::fuzz::unpack_bundle;

/// A tar of `(path, type, bytes)` members, paths written raw into the header (no checks).
fn tar_of(members: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, data) in members {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn unpack(members: &[(&str, tar::EntryType, &[u8])]) -> (Result<Vec<PathBuf>, ApiError>, PathBuf) {
    let root = tempfile::tempdir().unwrap().keep();
    let staging = root.join("staging");
    std::fs::create_dir(&staging).unwrap();
    (unpack_bundle(&tar_of(members), &staging), staging)
}

fn assert_invalid(result: Result<Vec<PathBuf>, ApiError>, what: &str) {
    match result {
        Err(ApiError::BundleInvalid(message)) => assert!(message.contains(what), "{message}"),
        other => panic!("expected bundle_invalid naming {what}, got {other:?}"),
    }
}

#[test]
fn a_bundle_of_files_unpacks_to_their_paths() {
    let (result, staging) = unpack(&[
        ("logs.txt", tar::EntryType::Regular, b"ok\n"),
        (
            "steps/build/cmd-1.stdout.log",
            tar::EntryType::Regular,
            b"hi\n",
        ),
    ]);
    let files = result.unwrap();
    assert_eq!(
        files,
        [
            Path::new("logs.txt"),
            Path::new("steps/build/cmd-1.stdout.log")
        ]
    );
    assert_eq!(std::fs::read(staging.join("logs.txt")).unwrap(), b"ok\n");
}

#[test]
fn paths_leaving_the_staging_directory_and_links_are_refused() {
    let (result, staging) = unpack(&[("../outside.txt", tar::EntryType::Regular, b"x")]);
    assert_invalid(result, "../outside.txt");
    assert!(!staging.parent().unwrap().join("outside.txt").exists());
    let (result, _) = unpack(&[("link", tar::EntryType::Symlink, b"")]);
    assert_invalid(result, "link");
}

/// Found while writing the `bundle_tar` fuzz target: the same path twice was unpacked twice and listed
/// twice, so storing the bundle failed on the second copy with a 500 instead of a 422.
#[test]
fn a_bundle_naming_one_file_twice_is_refused_as_invalid() {
    let (result, _) = unpack(&[
        ("logs.txt", tar::EntryType::Regular, b"one"),
        ("logs.txt", tar::EntryType::Regular, b"two"),
    ]);
    assert_invalid(result, "logs.txt");
}

/// Found while writing the `bundle_tar` fuzz target: a file and a directory of the same name (`a`, then
/// `a/b`, or the other way round) failed to unpack with a 500 instead of a 422.
#[test]
fn a_bundle_using_a_name_as_file_and_directory_is_refused_as_invalid() {
    for members in [
        [
            ("steps", tar::EntryType::Regular, &b"f"[..]),
            ("steps/build.log", tar::EntryType::Regular, &b"g"[..]),
        ],
        [
            ("steps/build.log", tar::EntryType::Regular, &b"g"[..]),
            ("steps", tar::EntryType::Regular, &b"f"[..]),
        ],
    ] {
        let (result, _) = unpack(&members);
        assert_invalid(result, "steps");
    }
}

/// A member whose header promises more bytes than the tar holds (a truncated upload) is the
/// sender's mistake too.
#[test]
fn a_truncated_member_is_refused_as_invalid() {
    let mut tar = tar_of(&[("logs.txt", tar::EntryType::Regular, &[b'x'; 2048])]);
    tar.truncate(512 + 700);
    let root = tempfile::tempdir().unwrap();
    assert_invalid(unpack_bundle(&tar, root.path()), "not a tar file");
}

/// Found by the `bundle_tar` fuzz target: a regular-file member named `steps/` (a trailing
/// slash) made the daemon answer 500 instead of refusing the bundle.
#[test]
fn a_regular_file_named_like_a_directory_is_refused_as_invalid_not_internal() {
    let tar = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fuzz-bundle-tar-regular-file-named-like-a-directory.tar"),
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    match unpack_bundle(&tar, root.path()) {
        Err(ApiError::BundleInvalid(_)) => {}
        other => panic!("expected bundle_invalid, got {other:?}"),
    }
}
