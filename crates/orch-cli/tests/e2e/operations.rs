//! Living with orch: `orch service` writes a systemd user unit that `systemd-analyze verify`
//! accepts, `orch config` shows each value's source and edits the user's file keeping its
//! comments, and completions and man pages come from the CLI definition.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{Finished, Home, COMMAND_DEADLINE};

fn run_env(home: &Home, args: &[&str], env: &[(&str, &str)]) -> Finished {
    home.spawn_with_env(args, env).finish(COMMAND_DEADLINE)
}

fn verify(unit: &Path) -> std::process::Output {
    Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("systemd-analyze runs (Debian package `systemd`, installed by .ci/run)")
}

#[test]
fn service_install_writes_a_unit_systemd_accepts_for_this_home() {
    let home = Home::new();
    let config = tempfile::tempdir().unwrap();
    let env = [("XDG_CONFIG_HOME", config.path().to_str().unwrap())];
    // A name of its own: uninstall asks a running user manager to stop and disable the unit,
    // and must never touch a developer's real `orch` service.
    let name = format!("orch-e2e-{}", std::process::id());
    let installed = run_env(
        &home,
        &["service", "install", "--no-enable", "--name", &name],
        &env,
    );
    installed.expect_code(0, "orch service install --no-enable");
    let unit = config.path().join(format!("systemd/user/{name}.service"));
    let text = std::fs::read_to_string(&unit).unwrap();
    let exec = text.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(
        exec.contains(&format!("\"--home\" \"{}\"", home.path().display())),
        "the unit runs this home: {exec}"
    );
    assert!(exec.contains("\"serve\""), "{exec}");
    let checked = verify(&unit);
    assert!(
        checked.status.success() && checked.stderr.is_empty(),
        "systemd-analyze verify complained: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    // The check itself can fail: a unit whose program does not exist is refused.
    let broken = config.path().join("broken.service");
    std::fs::write(
        &broken,
        text.replace(exec, "ExecStart=/nonexistent/orch serve"),
    )
    .unwrap();
    let refused = verify(&broken);
    assert!(
        !refused.status.success() || !refused.stderr.is_empty(),
        "systemd-analyze accepted a unit with a missing program"
    );

    // A second install does not overwrite without --force.
    let again = run_env(
        &home,
        &["service", "install", "--no-enable", "--name", &name],
        &env,
    );
    again.expect_code(2, "a second install");
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    run_env(
        &home,
        &[
            "service",
            "install",
            "--no-enable",
            "--force",
            "--name",
            "orch-b",
        ],
        &env,
    )
    .expect_code(0, "a second service by name");
    assert!(config.path().join("systemd/user/orch-b.service").exists());
    let bad = run_env(&home, &["service", "install", "--name", "../x"], &env);
    bad.expect_code(2, "a bad service name");

    // Uninstall removes it (stopping and disabling it when a user manager runs).
    run_env(&home, &["service", "uninstall", "--name", &name], &env)
        .expect_code(0, "orch service uninstall");
    assert!(!unit.exists());
    let missing = run_env(&home, &["service", "status", "--name", &name], &env);
    missing.expect_code(2, "status without a unit");
    assert!(
        missing.stderr.contains("orch service install"),
        "{}",
        missing.stderr
    );
}

fn entry<'a>(list: &'a Value, key: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == key)
        .unwrap_or_else(|| panic!("`{key}` is listed: {list}"))
}

#[test]
fn config_shows_where_each_value_comes_from_and_set_keeps_comments() {
    let home = Home::new();
    let global = home.write(
        "config.toml",
        "# my orch settings\n[agents]\n# real CLIs stay off for now\nenable_real_cli = false\n",
    );
    let project = home.write(".orch.toml", "auto_commit = false\n");
    let list = home.json(&["config", "list", "--json"]);
    assert_eq!(entry(&list, "agents.enable_real_cli")["value"], "false");
    assert_eq!(
        entry(&list, "agents.enable_real_cli")["source"],
        global.display().to_string()
    );
    assert_eq!(
        entry(&list, "auto_commit")["source"],
        project.display().to_string()
    );
    // The environment wins over both files, and says so.
    let with_env = run_env(
        &home,
        &["config", "list", "--json"],
        &[("ORCH_ENABLE_REAL_CLI", "1")],
    );
    with_env.expect_code(0, "config list with ORCH_ENABLE_REAL_CLI");
    let with_env = with_env.json();
    assert_eq!(
        entry(&with_env, "agents.enable_real_cli")["source"],
        "ORCH_ENABLE_REAL_CLI"
    );
    assert_eq!(entry(&with_env, "agents.enable_real_cli")["value"], "\"1\"");

    home.run(&["config", "set", "router.mode", "round_robin"])
        .expect_code(0, "config set router.mode");
    home.run(&["config", "set", "agents.enable_real_cli", "true"])
        .expect_code(0, "config set agents.enable_real_cli");
    let text = std::fs::read_to_string(&global).unwrap();
    assert!(
        text.starts_with(
            "# my orch settings\n[agents]\n# real CLIs stay off for now\nenable_real_cli = true\n"
        ),
        "the comments stay: {text}"
    );
    let got = home.json(&["config", "get", "router.mode", "--json"]);
    assert_eq!(got["value"], "\"round_robin\"");
    assert_eq!(got["source"], global.display().to_string());
    let plain = home.run(&["config", "get", "router.mode"]);
    plain.expect_code(0, "config get");
    assert!(
        plain.stdout.starts_with("\"round_robin\""),
        "{}",
        plain.stdout
    );

    // What orch would refuse is not written.
    let refused = home.run(&["config", "set", "router.mode", "telepathy"]);
    refused.expect_code(2, "an unknown router mode");
    assert!(refused.stderr.contains("unchanged"), "{}", refused.stderr);
    let unknown = home.run(&["config", "set", "no_such_key", "1"]);
    unknown.expect_code(2, "an unknown key");
    assert_eq!(std::fs::read_to_string(&global).unwrap(), text);
    let unset = home.run(&["config", "get", "base_branch"]);
    unset.expect_code(2, "a key set nowhere");
    assert!(unset.stderr.contains("default"), "{}", unset.stderr);

    // A database password never shows.
    let db = home.json(&[
        "--database",
        "postgres://orch:hunter2@db.example/orch",
        "config",
        "list",
        "--json",
    ]);
    let database = entry(&db, "database");
    assert_eq!(database["source"], "--database");
    assert!(!db.to_string().contains("hunter2"), "{db}");
    assert!(database["value"].as_str().unwrap().contains("orch:***@"));
}

#[test]
fn completions_and_the_man_page_come_from_the_cli_definition() {
    let home = Home::new();
    let bash = home.run(&["completions", "bash"]);
    bash.expect_code(0, "orch completions bash");
    for word in ["job", "service", "config", "completions"] {
        assert!(bash.stdout.contains(word), "bash completes `{word}`");
    }
    let script = home.write("orch.bash", &bash.stdout);
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    let zsh = home.run(&["completions", "zsh"]);
    zsh.expect_code(0, "orch completions zsh");
    assert!(
        zsh.stdout.starts_with("#compdef orch"),
        "{}",
        &zsh.stdout[..80]
    );
    let fish = home.run(&["completions", "fish"]);
    fish.expect_code(0, "orch completions fish");
    assert!(fish.stdout.contains("complete -c orch"));
    assert!(
        fish.stdout.contains("tick"),
        "job subcommands are completed"
    );
    home.run(&["completions", "tcsh"])
        .expect_code(2, "an unknown shell");

    let man = home.run(&["man"]);
    man.expect_code(0, "orch man");
    assert!(
        man.stdout.starts_with(".ie") || man.stdout.contains(".TH orch"),
        "{}",
        &man.stdout[..200]
    );
    assert!(man.stdout.contains(".TH orch 1"), "a section 1 page");
    assert!(man.stdout.contains("job"), "it lists the job command");
    let pages = home.path().join("man");
    home.run(&["man", "--dir", pages.to_str().unwrap()])
        .expect_code(0, "orch man --dir");
    for page in [
        "orch.1",
        "orch-job.1",
        "orch-job-add.1",
        "orch-service-install.1",
    ] {
        assert!(pages.join(page).exists(), "{page} is written");
    }
}
