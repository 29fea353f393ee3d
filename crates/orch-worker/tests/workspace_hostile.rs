//! A hostile task against orch's own git: every way a task (or orch's own environment) could
//! plant a program for orch's `prepare`, `verify`, `commit_all`, `diff`, `is_merged` and `remove`
//! to run, or redirect them at another repository, on real repositories in temporary
//! directories. Each attack's payload is a script that would leave a marker and dump its
//! environment (where `ORCH_WORKER_TOKEN` is); it must never run, the main checkout must not
//! change, nothing outside may be deleted, and a worktree whose git metadata was redirected must
//! be refused rather than diffed or committed.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use orch_worker::project::NonGitMode;
use orch_worker::workspace::{
    git_command, GitScope, Workspace, WorkspaceError, WorkspaceRequest, ENVIRONMENT_WHITELIST,
};

/// Every program-running or redirecting setting git knows, pointing at `payload`.
fn hostile_config(payload: &Path, hooks: &Path) -> String {
    let p = payload.display();
    format!(
        "[core]\n\tfsmonitor = {p}\n\thooksPath = {hooks}\n\tpager = {p}\n\tsshCommand = {p}\n\
         \taskPass = {p}\n\teditor = {p}\n\tuntrackedCache = true\n\
         [diff]\n\texternal = {p}\n[diff \"evil\"]\n\ttextconv = {p}\n\tcommand = {p}\n\
         [filter \"evil\"]\n\tclean = {p}\n\tsmudge = {p}\n\tprocess = {p}\n\trequired = true\n\
         [gpg]\n\tprogram = {p}\n[commit]\n\tgpgSign = true\n[credential]\n\thelper = !{p}\n\
         [alias]\n\tadd = !{p}\n\tdiff = !{p}\n[gc]\n\tauto = 1\n[maintenance]\n\tauto = true\n",
        hooks = hooks.display()
    )
}

/// Hooks git could run around a commit, a checkout or a ref update.
const HOOKS: &[&str] = &[
    "pre-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "post-checkout",
    "reference-transaction",
    "post-index-change",
    "pre-auto-gc",
    "post-rewrite",
    "fsmonitor-watchman",
];

/// Write an executable script that leaves `marker` and dumps its environment beside it.
fn write_payload(path: &Path, marker: &Path) {
    let dump = marker.with_extension("env");
    std::fs::write(
        path,
        format!(
            "#!/bin/sh\necho \"ran: $0 $*\" >> '{}'\nenv >> '{}'\nexit 0\n",
            marker.display(),
            dump.display()
        ),
    )
    .unwrap();
    make_executable(path);
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A directory of every hook, each the payload.
fn write_hooks(dir: &Path, payload: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for hook in HOOKS {
        std::fs::copy(payload, dir.join(hook)).unwrap();
        make_executable(&dir.join(hook));
    }
}

/// What orch's own process environment holds when it is hostile: the worker token, variables
/// that redirect git, and user and global config full of payloads. Set once for this whole test
/// binary; every test calls this first, and the test's own git clears its environment.
fn hostile_environment() -> &'static Path {
    static DECOY: OnceLock<PathBuf> = OnceLock::new();
    DECOY.get_or_init(|| {
        let decoy = tempfile::tempdir().unwrap().keep();
        let payload = decoy.join("payload.sh");
        let marker = decoy.join("ENV-ATTACK-RAN");
        write_payload(&payload, &marker);
        let hooks = decoy.join("hooks");
        write_hooks(&hooks, &payload);
        let config = hostile_config(&payload, &hooks);
        let home = decoy.join("home");
        std::fs::create_dir_all(home.join(".config/git")).unwrap();
        std::fs::write(home.join(".gitconfig"), &config).unwrap();
        std::fs::write(home.join(".config/git/config"), &config).unwrap();
        std::fs::write(
            home.join(".config/git/attributes"),
            "* filter=evil diff=evil\n",
        )
        .unwrap();
        std::fs::write(decoy.join("global.gitconfig"), &config).unwrap();
        let repo = decoy.join("repo");
        clean_git(&decoy, &["init", "-q", repo.to_str().unwrap()]);
        std::fs::write(repo.join(".git/config"), &config).unwrap();
        let p = payload.display().to_string();
        let variables: Vec<(&str, String)> = vec![
            ("ORCH_WORKER_TOKEN", "orch-worker-secret-token".into()),
            ("ORCH_ADMIN_TOKEN", "orch-admin-secret-token".into()),
            ("HOME", home.display().to_string()),
            (
                "XDG_CONFIG_HOME",
                home.join(".config").display().to_string(),
            ),
            ("GIT_DIR", repo.join(".git").display().to_string()),
            ("GIT_COMMON_DIR", repo.join(".git").display().to_string()),
            ("GIT_WORK_TREE", repo.display().to_string()),
            ("GIT_INDEX_FILE", decoy.join("index").display().to_string()),
            (
                "GIT_CONFIG_GLOBAL",
                decoy.join("global.gitconfig").display().to_string(),
            ),
            (
                "GIT_CONFIG_SYSTEM",
                decoy.join("global.gitconfig").display().to_string(),
            ),
            ("GIT_CONFIG_COUNT", "1".into()),
            ("GIT_CONFIG_KEY_0", "core.fsmonitor".into()),
            ("GIT_CONFIG_VALUE_0", p.clone()),
            ("GIT_CONFIG_PARAMETERS", format!("'core.fsmonitor'='{p}'")),
            ("GIT_EXTERNAL_DIFF", p.clone()),
            ("GIT_PAGER", p.clone()),
            ("PAGER", p.clone()),
            ("GIT_EDITOR", p.clone()),
            ("GIT_SSH_COMMAND", p.clone()),
            ("GIT_ASKPASS", p.clone()),
            ("SSH_ASKPASS", p.clone()),
            ("GIT_TRACE", decoy.join("trace").display().to_string()),
        ];
        for (name, value) in variables {
            std::env::set_var(name, value);
        }
        decoy
    })
}

/// The test's own git, immune to the hostile environment: cleared, no config but the
/// repository's, nothing that runs a program.
fn clean_git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", "/nonexistent")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .current_dir(dir)
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.pager=cat",
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "commit.gpgSign=false",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

/// One attack's world: a repository with a commit on `main`, a payload, a directory outside
/// everything with a file that must survive, and a third repository with hostile config.
struct Lab {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    worktrees_root: PathBuf,
    payload: PathBuf,
    marker: PathBuf,
    hooks: PathBuf,
    outside: PathBuf,
    third: PathBuf,
}

/// What a user would notice about the main checkout, read from files (running git there could
/// run what an attack planted in the main repository).
#[derive(Debug, PartialEq, Eq)]
struct MainState {
    head: String,
    main_tip: String,
    index: Vec<u8>,
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl Lab {
    fn new() -> Lab {
        hostile_environment();
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let repo = root.join("project");
        std::fs::create_dir(&repo).unwrap();
        clean_git(&repo, &["init", "-q"]);
        clean_git(&repo, &["symbolic-ref", "HEAD", "refs/heads/main"]);
        std::fs::write(repo.join("README.md"), "hello\n").unwrap();
        std::fs::write(repo.join("data.txt"), "data\n").unwrap();
        clean_git(&repo, &["add", "-A"]);
        clean_git(&repo, &["commit", "-q", "-m", "initial"]);
        let payload = root.join("payload.sh");
        let marker = root.join("PAYLOAD-RAN");
        write_payload(&payload, &marker);
        let hooks = root.join("evil-hooks");
        write_hooks(&hooks, &payload);
        let outside = root.join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious.txt"), "precious\n").unwrap();
        let third = root.join("third");
        clean_git(&root, &["init", "-q", "third"]);
        std::fs::write(third.join("third.txt"), "third\n").unwrap();
        clean_git(&third, &["add", "-A"]);
        clean_git(&third, &["commit", "-q", "-m", "third"]);
        let lab = Lab {
            _dir: dir,
            worktrees_root: root.join("home").join("worktrees"),
            root,
            repo,
            payload,
            marker,
            hooks,
            outside,
            third,
        };
        let config = lab.config();
        let mut third_config = std::fs::read_to_string(lab.third.join(".git/config")).unwrap();
        third_config.push_str(&config);
        std::fs::write(lab.third.join(".git/config"), third_config).unwrap();
        lab
    }

    fn config(&self) -> String {
        hostile_config(&self.payload, &self.hooks)
    }

    fn request(&self, task_id: i64) -> WorkspaceRequest {
        WorkspaceRequest {
            project_dir: self.repo.clone(),
            worktrees_root: self.worktrees_root.clone(),
            task_id,
            title: format!("task {task_id}"),
            base_branch: None,
            non_git: NonGitMode::Fail,
            copy_max_bytes: orch_worker::workspace::DEFAULT_COPY_MAX_BYTES,
            // One orch database per home in these tests: a task is its id and creation time.
            task_created_at: created_at_for(&self.worktrees_root),
            start: orch_worker::workspace::StartRequest::default(),
        }
    }

    fn main_state(&self) -> MainState {
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(&self.repo)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|entry| entry.file_name() != ".git")
        {
            let entry = entry.unwrap();
            if entry.file_type().is_file() {
                files.push((
                    entry.path().to_path_buf(),
                    std::fs::read(entry.path()).unwrap(),
                ));
            }
        }
        MainState {
            head: std::fs::read_to_string(self.repo.join(".git/HEAD")).unwrap(),
            main_tip: clean_git(&self.repo, &["rev-parse", "refs/heads/main"]),
            index: std::fs::read(self.repo.join(".git/index")).unwrap(),
            files,
        }
    }

    /// Everything that shows a payload ran or something outside was touched.
    fn escapes(&self) -> Vec<String> {
        let mut escapes = Vec::new();
        let decoy = hostile_environment();
        for marker in [
            self.marker.clone(),
            self.marker.with_extension("env"),
            decoy.join("ENV-ATTACK-RAN"),
            decoy.join("ENV-ATTACK-RAN.env"),
            decoy.join("trace"),
        ] {
            if let Ok(text) = std::fs::read_to_string(&marker) {
                escapes.push(format!(
                    "{} exists: {}",
                    marker.display(),
                    text.lines().take(3).collect::<Vec<_>>().join(" | ")
                ));
            }
        }
        if std::fs::read_to_string(self.outside.join("precious.txt"))
            .ok()
            .as_deref()
            != Some("precious\n")
        {
            escapes.push("outside/precious.txt was changed or deleted".into());
        }
        if !self.third.join("third.txt").exists() {
            escapes.push("the third repository's file was deleted".into());
        }
        escapes
    }
}

/// The pieces of a prepared git workspace.
struct Target {
    worktree: PathBuf,
    admin: PathBuf,
    common: PathBuf,
    branch: String,
}

fn target(workspace: &Workspace) -> Target {
    let Workspace::Git { branch, places, .. } = workspace else {
        panic!("expected a git worktree, got {workspace:?}");
    };
    Target {
        worktree: places.worktree.clone(),
        admin: places.admin_dir.clone(),
        common: places.common_dir.clone(),
        branch: branch.clone(),
    }
}

/// Replace a file (or a directory) with `contents`.
fn replace_with_file(path: &Path, contents: &str) {
    if path.is_dir() {
        std::fs::remove_dir_all(path).unwrap();
    } else {
        let _ = std::fs::remove_file(path);
    }
    std::fs::write(path, contents).unwrap();
}

/// Make `<dir>` a git directory with the hostile config (a copy of the main one's objects and
/// refs would do; an empty repository is enough for git to accept it).
fn hostile_git_dir(lab: &Lab, dir: &Path) {
    clean_git(&lab.root, &["init", "-q", "--bare", dir.to_str().unwrap()]);
    std::fs::write(dir.join("config"), lab.config()).unwrap();
    std::fs::write(dir.join("config.worktree"), lab.config()).unwrap();
    write_hooks(&dir.join("hooks"), &lab.payload);
}

/// What orch must do about an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The worktree's git metadata points elsewhere: refuse to diff and commit.
    Refused,
    /// Nothing orch's git reads was changed: work normally, and the payload never runs.
    Ignored,
}

struct Attack {
    name: &'static str,
    /// Done to the main repository before the worktree exists (what the user's own config
    /// holds, or what an unsandboxed earlier task left there).
    before: fn(&Lab),
    /// Done by the task in its worktree.
    plant: fn(&Lab, &Target),
    expect: Expect,
}

fn nothing(_: &Lab) {}

fn attacks() -> Vec<Attack> {
    vec![
        Attack {
            name: ".git replaced by a directory with an fsmonitor, hooks, pager and diff config",
            before: nothing,
            plant: |lab, t| {
                std::fs::remove_file(t.worktree.join(".git")).unwrap();
                hostile_git_dir(lab, &t.worktree.join(".git"));
            },
            expect: Expect::Refused,
        },
        Attack {
            name: ".git replaced by a copy of the worktree's admin dir with a hostile config",
            before: nothing,
            plant: |lab, t| {
                std::fs::remove_file(t.worktree.join(".git")).unwrap();
                let copy = t.worktree.join(".git");
                std::fs::create_dir(&copy).unwrap();
                for name in ["HEAD", "commondir", "index"] {
                    std::fs::copy(t.admin.join(name), copy.join(name)).unwrap();
                }
                std::fs::write(copy.join("gitdir"), format!("{}\n", copy.display())).unwrap();
                std::fs::write(copy.join("config.worktree"), lab.config()).unwrap();
                std::fs::write(copy.join("config"), lab.config()).unwrap();
            },
            expect: Expect::Refused,
        },
        Attack {
            name: ".git file redirected to the main checkout's .git",
            before: nothing,
            plant: |_, t| {
                replace_with_file(
                    &t.worktree.join(".git"),
                    &format!("gitdir: {}\n", t.common.display()),
                );
            },
            expect: Expect::Refused,
        },
        Attack {
            name: ".git file redirected to a third repository with hostile config",
            before: nothing,
            plant: |lab, t| {
                replace_with_file(
                    &t.worktree.join(".git"),
                    &format!("gitdir: {}\n", lab.third.join(".git").display()),
                );
            },
            expect: Expect::Refused,
        },
        Attack {
            name:
                ".git file redirected by a relative path to a hostile git dir inside the worktree",
            before: nothing,
            plant: |lab, t| {
                hostile_git_dir(lab, &t.worktree.join("evil.git"));
                replace_with_file(&t.worktree.join(".git"), "gitdir: evil.git\n");
            },
            expect: Expect::Refused,
        },
        Attack {
            name: ".git replaced by a symlink to the main checkout's .git",
            before: nothing,
            plant: |_, t| {
                std::fs::remove_file(t.worktree.join(".git")).unwrap();
                std::os::unix::fs::symlink(&t.common, t.worktree.join(".git")).unwrap();
            },
            expect: Expect::Refused,
        },
        Attack {
            name: ".git file redirected to another task's admin dir",
            before: nothing,
            plant: |_, t| {
                let other = t.admin.with_file_name("other-task");
                std::fs::create_dir(&other).unwrap();
                for name in ["HEAD", "commondir", "index"] {
                    std::fs::copy(t.admin.join(name), other.join(name)).unwrap();
                }
                std::fs::write(
                    other.join("gitdir"),
                    format!("{}\n", t.worktree.join(".git").display()),
                )
                .unwrap();
                replace_with_file(
                    &t.worktree.join(".git"),
                    &format!("gitdir: {}\n", other.display()),
                );
            },
            expect: Expect::Refused,
        },
        Attack {
            name: ".git removed",
            before: nothing,
            plant: |_, t| std::fs::remove_file(t.worktree.join(".git")).unwrap(),
            expect: Expect::Refused,
        },
        Attack {
            name: "commondir in the admin dir rewritten to a third repository",
            before: nothing,
            plant: |lab, t| {
                replace_with_file(
                    &t.admin.join("commondir"),
                    &format!("{}\n", lab.third.join(".git").display()),
                );
            },
            expect: Expect::Refused,
        },
        Attack {
            name: "gitdir in the admin dir rewritten to a directory outside",
            before: nothing,
            plant: |lab, t| {
                replace_with_file(
                    &t.admin.join("gitdir"),
                    &format!("{}\n", lab.outside.join(".git").display()),
                );
                std::os::unix::fs::symlink(&lab.outside, t.worktree.join("link-outside")).unwrap();
            },
            expect: Expect::Refused,
        },
        Attack {
            name: "HEAD in the admin dir rewritten to refs/heads/main",
            before: nothing,
            plant: |_, t| replace_with_file(&t.admin.join("HEAD"), "ref: refs/heads/main\n"),
            expect: Expect::Refused,
        },
        Attack {
            name: "HEAD in the admin dir detached at the main checkout's commit",
            before: nothing,
            plant: |lab, t| {
                let main = clean_git(&lab.repo, &["rev-parse", "refs/heads/main"]);
                replace_with_file(&t.admin.join("HEAD"), &format!("{main}\n"));
            },
            expect: Expect::Refused,
        },
        Attack {
            name: "the worktree's index replaced by a symlink to the main checkout's index",
            before: nothing,
            plant: |_, t| {
                std::fs::remove_file(t.admin.join("index")).unwrap();
                std::os::unix::fs::symlink(t.common.join("index"), t.admin.join("index")).unwrap();
            },
            expect: Expect::Refused,
        },
        Attack {
            name: "hooks and hostile config planted in the admin dir",
            before: nothing,
            plant: |lab, t| {
                write_hooks(&t.admin.join("hooks"), &lab.payload);
                std::fs::write(t.admin.join("config"), lab.config()).unwrap();
                std::fs::write(t.admin.join("config.worktree"), lab.config()).unwrap();
                std::fs::create_dir_all(t.admin.join("info")).unwrap();
                std::fs::write(t.admin.join("info/attributes"), "* filter=evil diff=evil\n")
                    .unwrap();
            },
            expect: Expect::Ignored,
        },
        Attack {
            name: "config.worktree with include.path while the repository enables worktreeConfig",
            before: |lab| {
                let mut config = std::fs::read_to_string(lab.repo.join(".git/config")).unwrap();
                config =
                    config.replace("repositoryformatversion = 0", "repositoryformatversion = 1");
                config.push_str("[extensions]\n\tworktreeConfig = true\n");
                std::fs::write(lab.repo.join(".git/config"), config).unwrap();
            },
            plant: |lab, t| {
                let included = lab.root.join("included.gitconfig");
                std::fs::write(&included, lab.config()).unwrap();
                std::fs::write(
                    t.admin.join("config.worktree"),
                    format!(
                        "[include]\n\tpath = {}\n[includeIf \"gitdir:/\"]\n\tpath = {}\n",
                        included.display(),
                        included.display()
                    ),
                )
                .unwrap();
                std::fs::write(t.worktree.join("x.bin"), "x\n").unwrap();
                std::fs::write(
                    t.worktree.join(".gitattributes"),
                    "* filter=evil diff=evil\n",
                )
                .unwrap();
            },
            expect: Expect::Ignored,
        },
        Attack {
            name: "hooks in the main repository's .git/hooks",
            before: |lab| write_hooks(&lab.repo.join(".git/hooks"), &lab.payload),
            plant: |lab, _| write_hooks(&lab.repo.join(".git/hooks"), &lab.payload),
            expect: Expect::Ignored,
        },
        Attack {
            name: "programs in the main repository's own config (hooksPath, fsmonitor, pager, \
                   external diff, textconv, signing, aliases)",
            before: |lab| {
                let mut config = std::fs::read_to_string(lab.repo.join(".git/config")).unwrap();
                // Every program of the hostile config but the filter driver, which a user's own
                // config is trusted to define.
                config.push_str(
                    &lab.config()
                        .replace("[filter \"evil\"]", "[filter \"user\"]"),
                );
                std::fs::write(lab.repo.join(".git/config"), config).unwrap();
            },
            plant: |_, t| {
                std::fs::write(t.worktree.join(".gitattributes"), "* diff=evil\n").unwrap();
            },
            expect: Expect::Ignored,
        },
        Attack {
            name: ".gitattributes naming filter, textconv and diff drivers defined nowhere trusted",
            before: nothing,
            plant: |_, t| {
                std::fs::write(
                    t.worktree.join(".gitattributes"),
                    "* filter=evil diff=evil merge=evil\n",
                )
                .unwrap();
                std::fs::write(t.worktree.join("data.txt"), "changed data\n").unwrap();
            },
            expect: Expect::Ignored,
        },
        Attack {
            name: "a nested repository with hostile config inside the worktree",
            before: nothing,
            plant: |lab, t| {
                let nested = t.worktree.join("nested");
                std::fs::create_dir(&nested).unwrap();
                clean_git(&nested, &["init", "-q"]);
                std::fs::write(nested.join("n.txt"), "n\n").unwrap();
                clean_git(&nested, &["add", "-A"]);
                clean_git(&nested, &["commit", "-q", "-m", "nested"]);
                std::fs::write(nested.join(".gitattributes"), "* filter=evil diff=evil\n").unwrap();
                clean_git(&nested, &["add", "-A"]);
                clean_git(&nested, &["commit", "-q", "-m", "attributes"]);
                let mut config = std::fs::read_to_string(nested.join(".git/config")).unwrap();
                config.push_str(&lab.config());
                std::fs::write(nested.join(".git/config"), config).unwrap();
                write_hooks(&nested.join(".git/hooks"), &lab.payload);
                std::fs::write(nested.join("dirty.txt"), "dirty\n").unwrap();
                // The nested repository is a gitlink in the worktree's index (as the task's own
                // `git add` makes it), and its file's stat no longer matches, so a `git status`
                // inside it would run its clean filter.
                clean_git(&t.worktree, &["add", "nested"]);
                let touched = Command::new("touch")
                    .args(["-d", "2001-01-01"])
                    .arg(nested.join("n.txt"))
                    .status()
                    .unwrap();
                assert!(touched.success());
            },
            expect: Expect::Ignored,
        },
        Attack {
            name: "a .gitmodules with command updates and a hostile submodule path",
            before: nothing,
            plant: |lab, t| {
                std::fs::write(
                    t.worktree.join(".gitmodules"),
                    format!(
                        "[submodule \"evil\"]\n\tpath = evil\n\turl = ext::{p}\n\tupdate = !{p}\n",
                        p = lab.payload.display()
                    ),
                )
                .unwrap();
            },
            expect: Expect::Ignored,
        },
    ]
}

/// Run orch's every git operation against one attack; what went wrong, if anything.
async fn try_attack(attack: &Attack) -> Vec<String> {
    let lab = Lab::new();
    (attack.before)(&lab);
    let workspace = Workspace::prepare(&lab.request(1)).await.unwrap();
    let t = target(&workspace);
    let start = clean_git(
        &lab.repo,
        &["rev-parse", &format!("refs/heads/{}", t.branch)],
    );
    std::fs::write(t.worktree.join("work.txt"), "the task's work\n").unwrap();
    (attack.plant)(&lab, &t);
    let before = lab.main_state();
    let mut problems = Vec::new();

    let verified = workspace.verify().await;
    let committed = workspace.commit_all("orch: attack").await;
    let diff = workspace.diff().await;
    let _ = workspace.is_merged("main").await;
    let _ = workspace.main_branch().await;
    // Another task of the same repository: `worktree add` (post-checkout), a commit
    // (commit hooks, reference-transaction) and a diff, next to the attacked one.
    match Workspace::prepare(&lab.request(2)).await {
        Ok(other) => {
            std::fs::write(other.path().join("other.txt"), "other\n").unwrap();
            if let Err(e) = other.commit_all("other").await {
                problems.push(format!("the other task's commit failed: {e}"));
            }
            if let Err(e) = other.diff().await {
                problems.push(format!("the other task's diff failed: {e}"));
            }
            let _ = other.remove().await;
        }
        Err(e) => problems.push(format!("another task could not be prepared: {e}")),
    }
    let tip = clean_git(
        &lab.repo,
        &["rev-parse", &format!("refs/heads/{}", t.branch)],
    );
    match attack.expect {
        Expect::Refused => {
            for (operation, result) in [
                ("verify", verified.err()),
                ("commit_all", committed.err()),
                ("diff", diff.err()),
            ] {
                if !matches!(result, Some(WorkspaceError::Tampered { .. })) {
                    problems.push(format!("{operation} was not refused: {result:?}"));
                }
            }
            if tip != start {
                problems.push(format!("the task's branch moved to {tip} though refused"));
            }
        }
        Expect::Ignored => {
            if let Err(e) = verified {
                problems.push(format!("verify refused: {e}"));
            }
            match committed {
                Ok(Some(sha)) if sha == tip => {}
                other => problems.push(format!(
                    "commit_all did not land on the task's branch ({tip}): {other:?}"
                )),
            }
            match diff {
                Ok(diff) if String::from_utf8_lossy(&diff).contains("+the task's work") => {}
                other => problems.push(format!("diff lacks the task's work: {other:?}")),
            }
        }
    }
    // A retry prepares the same task again (replacing a tampered worktree without running git
    // in it, or refusing a moved HEAD), then retention removes it.
    let again = Workspace::prepare(&lab.request(1)).await;
    if let Err(e) = workspace.remove().await {
        problems.push(format!("remove failed: {e}"));
    }
    if let Ok(again) = again {
        let _ = again.remove().await;
    }
    if workspace.path().exists() {
        problems.push("the worktree is still there after remove".into());
    }
    let after = lab.main_state();
    if after != before {
        problems.push("the main checkout changed (HEAD, main, index or files)".into());
    }
    problems.extend(lab.escapes());
    problems
}

#[tokio::test]
async fn no_git_attack_planted_by_a_task_or_orchs_environment_runs_or_redirects_orchs_git() {
    let attacks = attacks();
    let mut escaped = Vec::new();
    for attack in &attacks {
        let problems = try_attack(attack).await;
        if !problems.is_empty() {
            escaped.push(format!("{}:\n  {}", attack.name, problems.join("\n  ")));
        }
    }
    println!(
        "{} git attacks tried, {} escaped",
        attacks.len(),
        escaped.len()
    );
    assert!(escaped.is_empty(), "{}", escaped.join("\n"));
}

/// The variables git itself (and the `sh` running an alias) add to a child's environment.
const ADDED_BY_GIT_OR_SH: &[&str] = &[
    "GIT_CONFIG_PARAMETERS",
    "GIT_EXEC_PATH",
    "GIT_PREFIX",
    "PWD",
    "OLDPWD",
    "SHLVL",
    "_",
];

#[tokio::test]
async fn the_git_runner_passes_only_its_whitelist_of_variables_whatever_orchs_environment_holds() {
    let lab = Lab::new();
    let workspace = Workspace::prepare(&lab.request(1)).await.unwrap();
    let Workspace::Git { places, .. } = &workspace else {
        panic!("expected a git worktree");
    };
    let index = places.index();
    for scope in [
        GitScope::Discover { dir: &lab.repo },
        GitScope::Repository {
            git_dir: &places.common_dir,
            work_tree: None,
        },
        GitScope::Worktree {
            places,
            index: &index,
        },
    ] {
        let command = git_command(&scope, &["-c", "alias.dump-env=!env", "dump-env"]);
        let set: BTreeSet<String> = command
            .environment()
            .keys()
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        for name in &set {
            assert!(
                ENVIRONMENT_WHITELIST.contains(&name.as_str()),
                "{scope:?} sets {name}"
            );
        }
        let output = command.output().await.unwrap();
        assert!(output.status.success(), "{output:?}");
        let dumped = String::from_utf8(output.stdout).unwrap();
        let mut names = BTreeSet::new();
        for line in dumped.lines() {
            let (name, value) = line.split_once('=').unwrap_or((line, ""));
            names.insert(name.to_owned());
            assert!(
                ENVIRONMENT_WHITELIST.contains(&name) || ADDED_BY_GIT_OR_SH.contains(&name),
                "{scope:?}: git got {name}={value} from orch's environment"
            );
        }
        // Exactly what the runner set reached git: nothing it set was lost, nothing else came.
        for name in &set {
            assert!(names.contains(name), "{scope:?}: {name} did not reach git");
        }
        assert!(
            dumped.contains("\nHOME=/nonexistent\n") || dumped.starts_with("HOME=/nonexistent\n")
        );
        assert!(!dumped.contains("orch-worker-secret-token"), "{dumped}");
        assert!(
            !dumped.contains(&hostile_environment().display().to_string()),
            "{dumped}"
        );
    }
    assert!(lab.escapes().is_empty(), "{:?}", lab.escapes());
}

#[tokio::test]
async fn the_main_checkout_and_its_branch_never_receive_orchs_commit_when_head_was_redirected() {
    let lab = Lab::new();
    let workspace = Workspace::prepare(&lab.request(1)).await.unwrap();
    let t = target(&workspace);
    std::fs::write(t.worktree.join("work.txt"), "work\n").unwrap();
    replace_with_file(&t.admin.join("HEAD"), "ref: refs/heads/main\n");
    let main_before = clean_git(&lab.repo, &["rev-parse", "refs/heads/main"]);

    let error = workspace.commit_all("attack").await.unwrap_err();

    assert!(matches!(error, WorkspaceError::Tampered { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("orch did not commit or diff"), "{message}");
    assert!(message.contains("refs/heads/main"), "{message}");
    assert_eq!(
        clean_git(&lab.repo, &["rev-parse", "refs/heads/main"]),
        main_before
    );
}

#[tokio::test]
async fn remove_never_deletes_outside_the_worktree_whatever_its_git_files_name() {
    let lab = Lab::new();
    let workspace = Workspace::prepare(&lab.request(1)).await.unwrap();
    let t = target(&workspace);
    // The worktree names `outside` everywhere git's own removal would look.
    replace_with_file(
        &t.worktree.join(".git"),
        &format!("gitdir: {}\n", lab.outside.display()),
    );
    replace_with_file(
        &t.admin.join("gitdir"),
        &format!("{}\n", lab.outside.join(".git").display()),
    );
    std::os::unix::fs::symlink(&lab.outside, t.worktree.join("outside-link")).unwrap();
    std::os::unix::fs::symlink(&lab.repo, t.worktree.join("main-link")).unwrap();
    let before = lab.main_state();

    workspace.remove().await.unwrap();

    assert!(!t.worktree.exists());
    assert!(lab.escapes().is_empty(), "{:?}", lab.escapes());
    assert_eq!(lab.main_state(), before);
    // The admin dir no longer names this worktree, so it was left for `git worktree prune`.
    assert!(t.admin.exists());
}

/// A creation time standing for "this home's database" (see `WorkspaceRequest::task_created_at`).
fn created_at_for(root: &std::path::Path) -> i64 {
    root.as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(7_i64, |hash, byte| {
            hash.wrapping_mul(31).wrapping_add(i64::from(*byte))
        })
        .abs()
}
