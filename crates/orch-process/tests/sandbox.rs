//! The sandbox on this machine's kernel, with real processes: what a confined process can and
//! cannot touch. Where the kernel lacks a layer, the test says so and checks only what exists.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use orch_process::{support, Io, Sandbox, SandboxPolicy, Spawn};

struct Dirs {
    _root: tempfile::TempDir,
    hidden: PathBuf,
    work: PathBuf,
    secret: PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(root.path()).unwrap();
    let hidden = base.join("home");
    let work = hidden.join("worktrees/1");
    std::fs::create_dir_all(&work).unwrap();
    let secret = hidden.join("token");
    std::fs::write(&secret, "s3cret-value").unwrap();
    Dirs {
        _root: root,
        hidden,
        work,
        secret,
    }
}

fn policy(dirs: &Dirs, network: bool) -> SandboxPolicy {
    SandboxPolicy {
        read_write: vec![dirs.work.clone()],
        hidden: vec![dirs.hidden.clone()],
        network,
        ..SandboxPolicy::default()
    }
}

async fn sh(script: &str, cwd: &Path, sandbox: Sandbox) -> std::process::Output {
    Spawn::new("/bin/sh")
        .args(["-c", script])
        .cwd(cwd)
        .envs([("PATH", "/usr/bin:/bin")])
        .stdio(Io::Null, Io::Piped, Io::Piped)
        .sandbox(sandbox)
        .output()
        .await
        .unwrap()
}

fn landlock_here() -> bool {
    let here = support().landlock_fs.is_some();
    if !here {
        eprintln!(
            "this kernel lacks Landlock ({}); only the other layers are checked",
            support().describe()
        );
    }
    here
}

#[tokio::test]
async fn a_confined_process_writes_its_worktree_but_not_the_hidden_home() {
    let dirs = dirs();
    let out = sh(
        &format!(
            "echo ok > inside; echo bad > {0}/outside; cat {1}; echo bad > /tmp/orch-sandbox-$$; true",
            dirs.hidden.display(),
            dirs.secret.display()
        ),
        &dirs.work,
        Sandbox::Enforced(policy(&dirs, true)),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(dirs.work.join("inside")).unwrap(),
        "ok\n"
    );
    if landlock_here() {
        assert!(!dirs.hidden.join("outside").exists());
        assert!(!stdout.contains("s3cret"), "{stdout}");
    }
}

#[tokio::test]
async fn without_a_sandbox_the_same_script_reaches_the_home() {
    let dirs = dirs();
    let out = sh(
        &format!("cat {}", dirs.secret.display()),
        &dirs.work,
        Sandbox::Off,
    )
    .await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("s3cret"));
}

#[tokio::test]
async fn the_environment_is_exactly_what_was_given() {
    let dirs = dirs();
    let out = Spawn::new("/usr/bin/env")
        .envs([("ONLY", "this")])
        .stdio(Io::Null, Io::Piped, Io::Null)
        .sandbox(Sandbox::Enforced(policy(&dirs, true)))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ONLY=this\n");
}

#[tokio::test]
async fn a_confined_root_has_no_capability_on_the_host() {
    let dirs = dirs();
    if support().namespaces.is_err() {
        eprintln!("no user namespaces here: {}", support().describe());
        return;
    }
    // CapEff in the host's view is what matters; inside its own namespace the process may hold
    // capabilities, which give nothing over host resources (hostname is the host's UTS here).
    let out = sh(
        "hostname orch-sandbox-test 2>/dev/null && echo changed || echo refused",
        &dirs.work,
        Sandbox::Enforced(policy(&dirs, true)),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "refused");
}

#[tokio::test]
async fn network_off_cannot_reach_the_hosts_loopback_and_network_on_can() {
    let dirs = dirs();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        "exec /bin/bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected || echo refused'"
    );
    let on = sh(&script, &dirs.work, Sandbox::Enforced(policy(&dirs, true))).await;
    assert_eq!(String::from_utf8_lossy(&on.stdout).trim(), "connected");
    if support().namespaces.is_err() {
        eprintln!("no network namespaces here: {}", support().describe());
        return;
    }
    let off = sh(&script, &dirs.work, Sandbox::Enforced(policy(&dirs, false))).await;
    assert_eq!(String::from_utf8_lossy(&off.stdout).trim(), "refused");
}

#[tokio::test]
async fn a_masked_directory_shows_nothing_inside_the_sandbox() {
    let dirs = dirs();
    let sockets = dirs.hidden.join("tmux");
    std::fs::create_dir_all(&sockets).unwrap();
    std::fs::write(sockets.join("socket"), "").unwrap();
    let mut policy = policy(&dirs, true);
    policy.masked = vec![sockets.clone()];
    policy.read_only = vec![sockets.clone()];
    let out = sh(
        &format!("ls -A {}", sockets.display()),
        &dirs.work,
        Sandbox::Enforced(policy),
    )
    .await;
    eprintln!("support: {}", support().describe());
    if support().namespaces.is_ok() {
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "", "{out:?}");
    }
    assert!(sockets.join("socket").exists());
}
