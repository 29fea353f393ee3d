//! `orch doctor` speed (issue 11): agent CLIs are probed at once and their versions cached in
//! the home by binary path and modification time; `--no-agents` skips them.

use std::os::unix::fs::PermissionsExt;

use crate::support::Home;

/// A fake `claude` that prints a version and counts how often it was asked.
fn fake_claude(dir: &std::path::Path, counter: &std::path::Path) {
    let script = dir.join("claude");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho asked >> {}\necho '2.1.0 (Claude Code)'\n",
            counter.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn doctor(home: &Home, bin: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["doctor", "--json"];
    args.extend_from_slice(extra);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = home.command(&args).env("PATH", path).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn agent_versions_are_cached_by_path_and_mtime_and_no_agents_skips_them() {
    let home = Home::new();
    home.json(&["init", "--json"]);
    let bin = tempfile::tempdir().unwrap();
    let counter = home.path().join("asked");
    fake_claude(bin.path(), &counter);
    let asked = || {
        std::fs::read_to_string(&counter)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };

    let first = doctor(&home, bin.path(), &[]);
    let claude = first["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "claude")
        .cloned()
        .unwrap();
    assert_eq!(claude["version"], "2.1.0", "{first}");
    assert_eq!(asked(), 1);
    assert!(home.path().join("agent-versions.json").is_file());

    doctor(&home, bin.path(), &[]);
    assert_eq!(asked(), 1, "the second doctor used the cached version");

    // A changed binary (new modification time) is asked again.
    fake_claude(bin.path(), &counter);
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(bin.path().join("claude"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    doctor(&home, bin.path(), &[]);
    assert_eq!(asked(), 2);

    let skipped = doctor(&home, bin.path(), &["--no-agents"]);
    assert_eq!(skipped["agents"], serde_json::json!([]), "{skipped}");
    assert_eq!(asked(), 2);
}
