//! The artifact bundle on disk: every run and step file exists from the start, reopening keeps
//! content, writes are atomic and leave no temporary files, and no secret ever reaches disk.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use orch_worker::bundle::{Bundle, COMPLETE_FILES, RUN_FILES, STEP_FILES};
use orch_worker::redact::Redactor;
use serde_json::json;

/// A fake GitHub token, assembled at run time so repository scanners do not flag this file.
fn github_token() -> String {
    format!("ghp_{}", "S3cr3t".repeat(7))
}

const LITERAL_SECRET: &str = "pa\"ss\\word-42";

fn bundle(runs_root: &Path) -> Bundle {
    let redactor = Redactor::new(&[LITERAL_SECRET.to_string()]);
    Bundle::create(runs_root, 7, 2, redactor).expect("create the bundle")
}

/// Every file under `dir`, recursively, with its content.
fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.expect("walk the bundle");
        if entry.file_type().is_file() {
            let content = fs::read(entry.path()).expect("read a bundle file");
            files.push((entry.path().display().to_string(), content));
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn create_makes_the_run_directory_with_every_run_file_empty_but_the_results_absent() {
    let runs = tempfile::tempdir().expect("temp dir");
    let bundle = bundle(runs.path());
    assert_eq!(bundle.path(), runs.path().join("7").join("2"));
    for name in RUN_FILES {
        let path = bundle.path().join(name);
        if COMPLETE_FILES.contains(&name) {
            assert!(!path.exists(), "{name} is complete or absent, never empty");
            continue;
        }
        let content = fs::read(path).expect(name);
        assert!(content.is_empty(), "{name} is not empty");
    }
    let step = bundle.step_dir("s").expect("step dir");
    assert!(!step.join("result.json").exists());
}

#[test]
fn a_result_is_written_whole_under_its_name_or_not_at_all() {
    let runs = tempfile::tempdir().expect("temp dir");
    let mut bundle = bundle(runs.path());
    bundle
        .write_json("result.json", &json!({"status": "succeeded"}))
        .expect("json");
    let text = fs::read_to_string(bundle.path().join("result.json")).expect("result");
    assert!(text.contains("succeeded"));
    // Only the finished file is left: no temporary name beside it.
    let names: Vec<String> = fs::read_dir(bundle.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn reopening_a_bundle_keeps_what_was_written_before() {
    let runs = tempfile::tempdir().expect("temp dir");
    let mut first = bundle(runs.path());
    first
        .write_bytes("report.md", b"# half done\n")
        .expect("write");
    first.append("logs.txt", b"line one\n").expect("append");
    drop(first);
    let mut reopened = bundle(runs.path());
    assert_eq!(
        fs::read(reopened.path().join("report.md")).expect("read"),
        b"# half done\n"
    );
    reopened.append("logs.txt", b"line two\n").expect("append");
    assert_eq!(
        fs::read(reopened.path().join("logs.txt")).expect("read"),
        b"line one\nline two\n"
    );
}

#[test]
fn reopening_a_bundle_carries_over_the_manifest_redaction_counts() {
    let runs = tempfile::tempdir().expect("temp dir");
    let mut first = bundle(runs.path());
    first
        .append("logs.txt", github_token().as_bytes())
        .expect("append");
    first.write_manifest().expect("manifest");
    drop(first);
    let mut reopened = bundle(runs.path());
    reopened
        .append("logs.txt", github_token().as_bytes())
        .expect("append");
    reopened.write_manifest().expect("manifest");
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(reopened.path().join("manifest.json")).expect("read"))
            .expect("manifest is JSON");
    assert_eq!(manifest["redactions"], json!({"github_token": 2}));
}

#[test]
fn step_dir_makes_the_step_directory_with_every_step_file() {
    let runs = tempfile::tempdir().expect("temp dir");
    let bundle = bundle(runs.path());
    let dir = bundle.step_dir("build-1.x_y").expect("step dir");
    assert_eq!(dir, bundle.path().join("steps").join("build-1.x_y"));
    for name in STEP_FILES {
        // A step's result appears whole when the step ends, never empty before.
        let expected = !COMPLETE_FILES.contains(&name);
        assert_eq!(dir.join(name).is_file(), expected, "{name}");
    }
}

#[test]
fn step_names_that_are_not_plain_directory_names_are_refused() {
    let runs = tempfile::tempdir().expect("temp dir");
    let bundle = bundle(runs.path());
    for name in [
        "",
        ".",
        "..",
        ".hidden",
        "a/b",
        "../escape",
        "with space",
        "ünï",
        "a\\b",
    ] {
        let error = bundle.step_dir(name).expect_err(name);
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{name:?}");
        assert!(error.to_string().contains("step name"), "{error}");
    }
    assert!(!bundle.path().join("steps").join(".hidden").exists());
}

#[test]
fn paths_leaving_the_run_directory_are_refused() {
    let runs = tempfile::tempdir().expect("temp dir");
    let mut bundle = bundle(runs.path());
    for relative in ["../outside.txt", "/tmp/absolute.txt", "steps/../../x", ""] {
        let error = bundle.write_bytes(relative, b"x").expect_err(relative);
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{relative:?}");
    }
    assert!(!runs.path().join("7").join("outside.txt").exists());
}

#[test]
fn write_json_writes_pretty_json_with_a_trailing_newline() {
    let runs = tempfile::tempdir().expect("temp dir");
    let mut bundle = bundle(runs.path());
    bundle
        .write_json("state.json", &json!({"a": [1, 2]}))
        .expect("write");
    let text = fs::read_to_string(bundle.path().join("state.json")).expect("read");
    assert_eq!(text, "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n");
}

#[test]
fn a_secret_given_to_write_json_write_bytes_or_append_never_reaches_disk_and_is_counted() {
    let runs = tempfile::tempdir().expect("temp dir");
    let mut bundle = bundle(runs.path());
    let token = github_token();
    let step = bundle.step_dir("test").expect("step dir");
    assert!(step.ends_with("steps/test"));

    bundle
        .write_json(
            "context.json",
            &json!({
                "token": token,
                // JSON escaping turns the quote and backslash into `\"` and `\\`.
                "password": LITERAL_SECRET,
                "headers": {"authorization": "Bearer opaque.credential-value"},
                token.clone(): "a secret as a key",
            }),
        )
        .expect("write json");
    bundle
        .write_bytes("report.md", format!("# Report\nused {token}\n").as_bytes())
        .expect("write bytes");
    bundle
        .append(
            "steps/test/logs.txt",
            format!("pw={LITERAL_SECRET}\n").as_bytes(),
        )
        .expect("append");
    bundle.write_manifest().expect("manifest");

    let escaped_literal = serde_json::to_string(LITERAL_SECRET).expect("escape");
    let escaped_literal = escaped_literal.trim_matches('"');
    for (path, content) in all_files(bundle.path()) {
        for secret in [
            token.as_str(),
            LITERAL_SECRET,
            escaped_literal,
            "opaque.credential-value",
        ] {
            assert!(
                !contains(&content, secret.as_bytes()),
                "{secret:?} reached {path}"
            );
        }
    }

    let context: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.path().join("context.json")).expect("read"))
            .expect("context.json stays valid JSON after redaction");
    assert_eq!(context["token"], "[REDACTED:github_token]");
    assert_eq!(context["password"], "[REDACTED:secret_value]");
    assert_eq!(
        context["headers"]["authorization"],
        "Bearer [REDACTED:bearer_token]"
    );
    assert_eq!(context["[REDACTED:github_token]"], "a secret as a key");

    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.path().join("manifest.json")).expect("read"))
            .expect("manifest is JSON");
    assert_eq!(
        manifest["redactions"],
        json!({"github_token": 3, "secret_value": 2, "bearer_token": 1})
    );
    assert_eq!(manifest["entries"], json!([]));
    let written_at = manifest["written_at"]
        .as_str()
        .expect("written_at is a string");
    assert!(
        humantime::parse_rfc3339(written_at).is_ok(),
        "{written_at} is not RFC 3339"
    );
}

#[test]
fn redactions_noted_from_elsewhere_are_added_to_the_manifest() {
    let runs = tempfile::tempdir().expect("temp dir");
    let mut bundle = bundle(runs.path());
    bundle.note_redactions(&[("slack_token".to_string(), 4)].into_iter().collect());
    bundle
        .append("logs.txt", github_token().as_bytes())
        .expect("append");
    bundle.write_manifest().expect("manifest");
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.path().join("manifest.json")).expect("read"))
            .expect("manifest is JSON");
    assert_eq!(
        manifest["redactions"],
        json!({"github_token": 1, "slack_token": 4})
    );
}

#[test]
fn atomic_writes_leave_no_temporary_files_behind() {
    let runs = tempfile::tempdir().expect("temp dir");
    let mut bundle = bundle(runs.path());
    bundle.step_dir("s").expect("step dir");
    for round in 0..20 {
        bundle
            .write_json("state.json", &json!({"round": round}))
            .expect("json");
        bundle
            .write_bytes("steps/s/report.md", b"report")
            .expect("bytes");
    }
    bundle.write_manifest().expect("manifest");
    let mut names: Vec<String> = all_files(bundle.path())
        .into_iter()
        .map(|(path, _)| {
            Path::new(&path)
                .strip_prefix(bundle.path())
                .expect("inside the bundle")
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    let mut expected: Vec<String> = RUN_FILES
        .iter()
        .filter(|name| **name != "result.json")
        .map(|name| name.to_string())
        .collect();
    expected.extend(
        STEP_FILES
            .iter()
            .filter(|name| **name != "result.json")
            .map(|name| format!("steps/s/{name}")),
    );
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn a_failed_atomic_write_leaves_the_old_file_and_no_temporary_file() {
    let runs = tempfile::tempdir().expect("temp dir");
    let mut bundle = bundle(runs.path());
    bundle.write_bytes("report.md", b"old").expect("write");
    // A directory where the file should be makes the final rename fail.
    fs::create_dir(bundle.path().join("blocked")).expect("mkdir");
    fs::write(bundle.path().join("blocked").join("keep"), b"x").expect("fill");
    assert!(bundle.write_bytes("blocked", b"new").is_err());
    assert_eq!(
        fs::read(bundle.path().join("report.md")).expect("read"),
        b"old"
    );
    let leftovers: Vec<String> = fs::read_dir(bundle.path())
        .expect("list")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn manifest_entries_give_paths_inside_the_run_directory_relative_to_it() {
    use orch_worker::bundle::ManifestEntry;
    use orch_worker::exec::{CommandRecord, ExitRecord, StreamRecord};

    let runs = tempfile::tempdir().expect("temp dir");
    let workspace = tempfile::tempdir().expect("workspace");
    let mut bundle = bundle(runs.path());
    let step = bundle.step_dir("build").expect("step dir");
    let stream = |name: &str| StreamRecord {
        path: step.join(name),
        bytes_seen: 3,
        bytes_kept: 3,
        truncated: false,
        sha256: "00".repeat(32),
    };
    bundle.record(ManifestEntry::Command {
        step: "build".to_string(),
        record: CommandRecord {
            argv: vec!["curl".to_string(), format!("--token={}", github_token())],
            cwd: workspace.path().to_path_buf(),
            env_names: vec!["PATH".to_string()],
            started_at_ms: 1,
            ended_at_ms: 2,
            exit: ExitRecord {
                code: Some(0),
                signal: None,
                timed_out: false,
                cancelled: false,
            },
            stdout: stream("stdout.log"),
            stderr: stream("stderr.log"),
            redactions: Default::default(),
        },
    });
    bundle.record(ManifestEntry::Agent {
        step: "build".to_string(),
        agent: "sim".to_string(),
        argv: vec![],
        cwd: workspace.path().to_path_buf(),
        started_at_ms: 3,
        ended_at_ms: 4,
        success: true,
        events_path: step.join("events.jsonl"),
        events_bytes: 0,
        events_sha256: "00".repeat(32),
    });
    bundle.write_manifest().expect("manifest");

    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.path().join("manifest.json")).expect("read"))
            .expect("manifest is JSON");
    let command = &manifest["entries"][0];
    assert_eq!(command["type"], "command");
    assert_eq!(command["stdout"]["path"], "steps/build/stdout.log");
    assert_eq!(command["stderr"]["path"], "steps/build/stderr.log");
    assert_eq!(command["cwd"], workspace.path().display().to_string());
    assert_eq!(command["argv"][1], "--token=[REDACTED:github_token]");
    let agent = &manifest["entries"][1];
    assert_eq!(agent["type"], "agent");
    assert_eq!(agent["events_path"], "steps/build/events.jsonl");
    assert_eq!(manifest["redactions"], json!({"github_token": 1}));
}
