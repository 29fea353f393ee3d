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

/// Mode bits and modification time of `path` (not following a final symbolic link).
fn stamp(path: &Path) -> (u32, std::time::SystemTime) {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.permissions().mode(), meta.modified().unwrap())
}

/// A file with mode 0644 and an old modification time.
fn old_file(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, "original").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(old)
        .unwrap();
}

fn read_only_mounts_here() -> bool {
    let here = support().read_only_mounts.is_ok();
    if !here {
        eprintln!(
            "no read-only mount tree on this machine ({}); metadata is not checked",
            support().describe()
        );
    }
    here
}

/// chmod, touch, utimes (`touch -d`), chown to oneself, mkfifo and a hard link, each printed
/// as `<name>=<status>`.
fn metadata_script(file: &Path, dir: &Path) -> String {
    let (file, dir) = (file.display(), dir.display());
    format!(
        "chmod 600 {file}; echo chmod=$?; touch {file}; echo touch=$?; \
         touch -d 2001-02-03 {file}; echo utimes=$?; chown $(id -u):$(id -g) {file}; echo chown=$?; \
         chmod 700 {dir}; echo chmod_dir=$?; mkfifo {dir}/fifo; echo mkfifo=$?; \
         ln {file} {dir}/hardlink; echo link=$?"
    )
}

#[tokio::test]
async fn metadata_outside_the_writable_paths_cannot_change_but_inside_it_can() {
    let dirs = dirs();
    let open = dirs.hidden.parent().unwrap().join("open");
    std::fs::create_dir_all(&open).unwrap();
    let outside = open.join("file");
    old_file(&outside);
    old_file(&dirs.secret);
    let inside = dirs.work.join("file");
    old_file(&inside);
    let before = [
        stamp(&outside),
        stamp(&dirs.secret),
        stamp(&dirs.hidden),
        stamp(&open),
    ];
    let sandbox = Sandbox::Enforced(policy(&dirs, true));
    let script = format!(
        "{}; {}; chmod 755 {}; echo chmod_hidden=$?; touch {}; echo touch_secret=$?; \
         echo null > /dev/null; echo dev_null=$?",
        metadata_script(&outside, &open),
        metadata_script(&inside, &dirs.work),
        dirs.hidden.display(),
        dirs.secret.display()
    );
    let out = sh(&script, &dirs.work, sandbox).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let statuses: Vec<(&str, &str)> = stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    assert_eq!(statuses.len(), 17, "{stdout}{stderr}");
    let (outer, rest) = statuses.split_at(7);
    let (inner, rest) = rest.split_at(7);
    assert!(
        inner.iter().all(|(_, status)| *status == "0"),
        "inside the worktree everything works: {stdout}{stderr}"
    );
    assert_eq!(rest[2], ("dev_null", "0"), "{stdout}{stderr}");
    assert_ne!(stamp(&inside), before[0], "the file inside changed");
    assert!(dirs.work.join("fifo").exists() && dirs.work.join("hardlink").exists());
    if !read_only_mounts_here() {
        return;
    }
    assert!(
        outer
            .iter()
            .chain(&rest[..2])
            .all(|(_, status)| *status != "0"),
        "every change outside fails: {stdout}{stderr}"
    );
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    let after = [
        stamp(&outside),
        stamp(&dirs.secret),
        stamp(&dirs.hidden),
        stamp(&open),
    ];
    assert_eq!(before, after, "mode and mtime outside are unchanged");
    assert!(!open.join("fifo").exists() && !open.join("hardlink").exists());
}

#[tokio::test]
async fn a_confined_process_holds_no_capability_even_as_root() {
    let dirs = dirs();
    let out = sh(
        "grep -E '^Cap(Prm|Eff|Bnd|Amb):' /proc/self/status",
        &dirs.work,
        Sandbox::Enforced(policy(&dirs, true)),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !read_only_mounts_here() {
        return;
    }
    // With any capability in its namespace a root task could clear the read-only flags again.
    let sets: Vec<&str> = stdout.lines().collect();
    assert_eq!(sets.len(), 4, "{stdout}");
    assert!(
        sets.iter().all(|line| line.ends_with("0000000000000000")),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_git_commit_inside_a_worktree_writes_its_objects_and_admin_dir() {
    let dirs = dirs();
    let repo = dirs.hidden.parent().unwrap().join("repo");
    let git = |args: &[&str], cwd: &Path| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    std::fs::create_dir_all(&repo).unwrap();
    git(&["init", "-q", "-b", "main"], &repo);
    git(
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "root",
        ],
        &repo,
    );
    let work = dirs.hidden.join("worktrees/wt");
    git(
        &["worktree", "add", "-q", "--detach", work.to_str().unwrap()],
        &repo,
    );
    let common = repo.join(".git");
    let policy = SandboxPolicy {
        read_write: vec![
            work.clone(),
            common.join("worktrees/wt"),
            common.join("objects"),
        ],
        read_only: vec![repo.clone()],
        hidden: vec![dirs.hidden.clone()],
        ..SandboxPolicy::default()
    };
    let out = sh(
        "echo change > file && git add file && \
         git -c user.name=t -c user.email=t@t commit -q -m change && git rev-parse HEAD",
        &work,
        Sandbox::Enforced(policy),
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let head = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let admin_head = std::fs::read_to_string(common.join("worktrees/wt/HEAD")).unwrap();
    assert_eq!(admin_head.trim(), head);
}
