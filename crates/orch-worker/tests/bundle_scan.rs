//! The end-of-run scan: files a step or agent wrote into its bundle directory (anywhere under
//! it, any content) are redacted in place, and the manifest's digests match the stored files.
//!
//! Sample tokens are assembled at run time so that repository secret scanners do not flag this
//! file.

use std::fs;
use std::path::Path;

use orch_worker::bundle::{manifest_digests, scan_finished_bundle, sha256_file, Bundle};
use orch_worker::redact::Redactor;

const LITERAL_SECRET: &str = "orch-own-token-0123456789abcdef";

fn secrets() -> Vec<String> {
    vec![
        format!("ghp_{}", "S3cr3t".repeat(7)),
        format!("AKIA{}", "ABCDEFGHIJKLMNOP"),
        format!("xoxb-{}", "1234567890-abcdef"),
        format!("sk_live_{}", "4eC39HqLyjWDarjtT1zdp7dc"),
        LITERAL_SECRET.to_owned(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Every secret, checked in every file under `dir` (hidden ones included).
fn assert_no_secret_under(dir: &Path) {
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.expect("walk");
        if !entry.file_type().is_file() {
            continue;
        }
        let content = fs::read(entry.path()).expect("read");
        for secret in secrets() {
            assert!(
                !contains(&content, secret.as_bytes()),
                "{} still holds {secret}",
                entry.path().display()
            );
        }
    }
}

/// What a hostile step leaves in its bundle directory: text, binary around a secret, a secret
/// across lines of a long file, in nested and hidden files.
fn plant(dir: &Path) {
    let all = secrets().join("\n");
    fs::create_dir_all(dir.join("steps/build/outputs/deep")).expect("mkdir");
    fs::write(dir.join("steps/build/notes.txt"), format!("{all}\n")).expect("write");
    let mut binary = vec![0u8, 0xff, 0xfe];
    binary.extend_from_slice(secrets()[0].as_bytes());
    binary.extend_from_slice(&[0xc3, 0x28, 0]);
    fs::write(dir.join("steps/build/outputs/deep/blob.bin"), binary).expect("write");
    fs::write(dir.join("steps/build/.hidden"), LITERAL_SECRET).expect("write");
    let long = format!("{}{}\n", "x".repeat(200_000), secrets()[1]);
    fs::write(dir.join("steps/build/long.log"), long).expect("write");
}

#[test]
fn the_end_of_run_scan_redacts_every_file_a_step_wrote_into_the_bundle() {
    let runs = tempfile::tempdir().expect("temp dir");
    let redactor = Redactor::new(&[LITERAL_SECRET.to_owned()]);
    let mut bundle = Bundle::create(runs.path(), 3, 1, redactor).expect("bundle");
    bundle.step_dir("build").expect("step dir");
    plant(bundle.path());
    bundle.scan_all().expect("scan");
    bundle.write_manifest().expect("manifest");
    assert_no_secret_under(runs.path());
    let notes = fs::read_to_string(bundle.path().join("steps/build/notes.txt")).expect("read");
    assert!(notes.contains("[REDACTED:stripe_key]"), "{notes}");
    assert!(notes.contains("[REDACTED:secret_value]"), "{notes}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.path().join("manifest.json")).expect("read"))
            .expect("json");
    assert!(
        manifest["redactions"]["github_token"].as_u64() >= Some(2),
        "{manifest}"
    );
}

#[test]
fn a_rescanned_bundle_has_manifest_digests_that_match_the_stored_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("steps/build/cmd-1.stdout.log");
    fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
    fs::write(&out, format!("token {}\n", secrets()[0])).expect("write");
    let manifest = serde_json::json!({
        "entries": [{
            "kind": "command",
            "stdout": {"path": "steps/build/cmd-1.stdout.log", "sha256": sha256_file(&out).expect("sha")},
        }],
        "redactions": {},
    });
    fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_vec(&manifest).expect("json"),
    )
    .expect("write");

    let scan = scan_finished_bundle(dir.path(), &Redactor::new(&[])).expect("scan");
    assert_eq!(scan.changed, ["steps/build/cmd-1.stdout.log"]);
    let stored: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("manifest.json")).expect("read"))
            .expect("json");
    for (path, sha) in manifest_digests(&stored) {
        assert_eq!(sha256_file(&dir.path().join(path)).expect("sha"), sha);
    }
    assert_eq!(stored["redactions"]["github_token"], 1);
    assert_no_secret_under(dir.path());
}

#[test]
fn a_bundle_without_secrets_is_left_byte_for_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("logs.txt"), "nothing to see\n").expect("write");
    let before = fs::metadata(dir.path().join("logs.txt"))
        .expect("stat")
        .modified()
        .expect("mtime");
    let scan = scan_finished_bundle(dir.path(), &Redactor::new(&[])).expect("scan");
    assert!(scan.changed.is_empty() && scan.counts.is_empty());
    let after = fs::metadata(dir.path().join("logs.txt"))
        .expect("stat")
        .modified()
        .expect("mtime");
    assert_eq!(before, after);
}
