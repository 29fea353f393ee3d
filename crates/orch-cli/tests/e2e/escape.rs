//! The escape suite: tasks that try to leave their worktree, run by the real `orch serve` with
//! the sandbox on (the default where the kernel supports it). Exec steps use tools the
//! validator does not know, wrappers, `make`, git aliases, links made in one step and used in
//! the next, reads of the home's secrets, writes to other runs, the bundle, the main checkout and
//! the user's real `HOME`, the daemon's API with a stolen token and signals to orch; agent steps
//! (`sim` as a confined process, and Claude Code against the scripted model when installed) try
//! the same. The project allows shell entrypoints on purpose: the validator is only policy, the
//! sandbox is the wall. Afterwards every target is checked (content, mode, owner, mtime and ctime,
//! so a `chmod`, `touch`, `chown` or `setxattr` counts; absence) and no
//! secret (nor its reverse) appears in anything the tasks left; the test prints
//! `N tried, 0 escaped` and fails listing each escape.
//!
//! Escapes through orch's own git are here too (a `.git` replaced by a repository with an
//! fsmonitor payload or pointed at the main checkout, hooks planted in the main repository,
//! `hooksPath` and filter drivers in the worktree's admin config, `HEAD` pointed at main): orch
//! runs git outside the sandbox, so these check that it obeys nothing the task planted
//! (`crates/orch-worker/tests/workspace_hostile.rs` has the same families against the library).
//!
//! Where the kernel lacks Landlock or namespaces, the suite says so and checks that
//! `sandbox = "required"` refuses every task at claim time instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::support::{files_under, read_json, Home, Repo, SERVE_DEADLINE};

/// What must hold after the attempts.
enum Target {
    /// The file keeps its content and metadata (mode, owner, mtime, ctime).
    Unchanged(PathBuf),
    /// The directory keeps its mode and owner (orch itself writes in it, so its times move).
    SameMode(PathBuf),
    /// Nothing exists at this path.
    Absent(PathBuf),
}

struct Attempt {
    name: String,
    /// The YAML of the task's `steps:` list, indented for a task.
    steps: String,
    targets: Vec<Target>,
}

/// One step running `script` under `sh -c` (every attempt ends well, so later steps run).
fn sh(script: &str) -> String {
    format!(
        "      - exec:\n          - argv: [sh, -c, {}]\n",
        yaml_string(&format!("{script} ; true"))
    )
}

/// One step running `argv` as it is (no shell); the step's failure is fine.
fn argv(args: &[&str]) -> String {
    let list: Vec<String> = args.iter().map(|a| yaml_string(a)).collect();
    format!("      - exec:\n          - argv: [{}]\n", list.join(", "))
}

fn sim(prompt: &str) -> String {
    format!(
        "      - agent: sim\n        prompt: {}\n",
        yaml_string(prompt)
    )
}

fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

struct World {
    home: Home,
    repo: Repo,
    outside: tempfile::TempDir,
    real_home: tempfile::TempDir,
    secrets: Vec<String>,
    victim_result: PathBuf,
    port: u16,
}

impl World {
    fn outside(&self, name: &str) -> PathBuf {
        self.outside.path().join(name)
    }

    fn p(&self, path: &Path) -> String {
        path.display().to_string()
    }
}

fn random_hex() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn world() -> World {
    let home = Home::new();
    let repo = Repo::new(&[
        ("README.md", "# project\n"),
        ("NOTES.md", "# notes\n"),
        (".orch.toml", "allow_shell = true\n"),
    ]);
    let outside = tempfile::tempdir().unwrap();
    let real_home = tempfile::tempdir().unwrap();
    for name in [".bashrc", ".gitconfig"] {
        std::fs::write(real_home.path().join(name), format!("# real {name}\n")).unwrap();
    }
    write_private(&real_home.path().join("id_rsa"), "a private key\n");
    let admin = format!("admin-{}", random_hex());
    let worker = format!("worker-{}", random_hex());
    let config_secret = format!("config-{}", random_hex());
    write_private(&home.path().join("token"), &format!("{admin}\n"));
    write_private(&home.path().join("worker-token"), &format!("{worker}\n"));
    std::fs::write(
        home.path().join("config.toml"),
        format!("# {config_secret}\nallow_shell = false\n"),
    )
    .unwrap();
    // A victim task whose title is a secret in the database and whose bundle is another run's.
    let db_secret = format!("victim-{}", random_hex());
    let victim = format!(
        "tasks:\n  - id: v\n    title: {db_secret}\n    steps:\n      - exec:\n          - argv: [\"true\"]\n"
    );
    let id = home.submit("victim", &victim, repo.path())["v"];
    home.serve_until_idle(1);
    let victim_result = home.run_dir(id, 1).join("result.json");
    assert!(victim_result.is_file());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    World {
        home,
        repo,
        outside,
        real_home,
        secrets: vec![admin, worker, config_secret, db_secret],
        victim_result,
        port,
    }
}

/// Every exec attempt. `O(name)` files outside are created by the caller with `original`.
fn exec_attempts(w: &World) -> Vec<Attempt> {
    let home = w.home.path();
    let o = |name: &str| w.p(&w.outside(name));
    let mut attempts = Vec::new();
    let mut add = |name: &str, steps: String, targets: Vec<Target>| {
        attempts.push(Attempt {
            name: name.to_owned(),
            steps,
            targets,
        });
    };
    let unchanged_o = |name: &str| Target::Unchanged(w.outside(name));
    // Tools the validator does not know.
    add("tee", argv(&["tee", &o("tee")]), vec![unchanged_o("tee")]);
    add(
        "python3 -c",
        argv(&[
            "python3",
            "-c",
            &format!("open('{}','w').write('pwned')", o("py")),
        ]),
        vec![unchanged_o("py")],
    );
    add(
        "perl -e",
        argv(&[
            "perl",
            "-e",
            &format!("open(F,'>{}'); print F 'pwned'", o("perl")),
        ]),
        vec![unchanged_o("perl")],
    );
    add(
        "node -e",
        argv(&[
            "node",
            "-e",
            &format!("require('fs').writeFileSync('{}','pwned')", o("node")),
        ]),
        vec![unchanged_o("node")],
    );
    add(
        "install",
        argv(&["install", "-m", "644", "README.md", &o("install")]),
        vec![unchanged_o("install")],
    );
    add(
        "touch",
        argv(&["touch", &o("touch")]),
        vec![unchanged_o("touch")],
    );
    add(
        "sed -i",
        argv(&["sed", "-i", "s/original/pwned/", &o("sed")]),
        vec![unchanged_o("sed")],
    );
    add(
        "cp --targ=",
        argv(&[
            "cp",
            &format!("--targ={}", w.p(w.outside.path())),
            "README.md",
        ]),
        vec![Target::Absent(w.outside("README.md"))],
    );
    add(
        "find -fprint",
        argv(&["find", ".", "-maxdepth", "0", "-fprint", &o("find")]),
        vec![unchanged_o("find")],
    );
    add(
        "dd of=",
        argv(&["dd", "if=/dev/zero", &format!("of={}", o("dd")), "count=1"]),
        vec![unchanged_o("dd")],
    );
    add(
        "truncate",
        argv(&["truncate", "-s", "0", &o("truncate")]),
        vec![unchanged_o("truncate")],
    );
    add(
        "find -delete",
        argv(&["find", &o("delete"), "-delete"]),
        vec![unchanged_o("delete")],
    );
    // Wrappers.
    for (wrapper, prefix) in [
        ("ionice", vec!["ionice", "-c", "3"]),
        ("flock", vec!["flock", "lockfile"]),
        ("env", vec!["env"]),
        ("timeout", vec!["timeout", "10"]),
        ("nice", vec!["nice"]),
    ] {
        let target = format!("wrap-{wrapper}");
        let mut args = prefix.clone();
        let path = o(&target);
        args.extend(["touch", path.as_str()]);
        add(wrapper, argv(&args), vec![unchanged_o(&target)]);
    }
    add(
        "script",
        argv(&[
            "script",
            "-qc",
            &format!("touch {}", o("script")),
            "/dev/null",
        ]),
        vec![unchanged_o("script")],
    );
    add(
        "xargs",
        sh(&format!("echo {} | xargs touch", o("xargs"))),
        vec![unchanged_o("xargs")],
    );
    add(
        "make with a committed Makefile",
        argv(&["make", "escape"]),
        vec![unchanged_o("make")],
    );
    add(
        "git -c alias.x=!",
        argv(&["git", "-c", &format!("alias.x=!touch {}", o("alias")), "x"]),
        vec![unchanged_o("alias")],
    );
    // Links.
    add(
        "symlink made and followed in one step",
        format!(
            "      - exec:\n          - argv: [ln, -s, {}, link]\n          - argv: [sh, -c, \"echo pwned > link; true\"]\n",
            yaml_string(&o("symlink-one"))
        ),
        vec![unchanged_o("symlink-one")],
    );
    add(
        "symlink made in one step, written in the next",
        format!(
            "{}{}",
            sh(&format!("ln -s {} link", o("symlink-two"))),
            sh("echo pwned > link")
        ),
        vec![unchanged_o("symlink-two")],
    );
    add(
        "hard link made in one step, written in the next",
        format!(
            "{}{}",
            sh(&format!("ln {} hard", o("hard"))),
            sh("echo pwned >> hard")
        ),
        vec![unchanged_o("hard")],
    );
    add(
        "hard link to the home's config, written in the next step",
        format!(
            "{}{}",
            sh(&format!("ln {}/config.toml cfg", home.display())),
            sh("echo 'allow_shell = true' >> cfg")
        ),
        vec![Target::Unchanged(home.join("config.toml"))],
    );
    add(
        "python symlink and write in one command",
        argv(&[
            "python3",
            "-c",
            &format!(
                "import os; os.symlink('{}', 'pl'); open('pl','w').write('pwned')",
                o("pylink")
            ),
        ]),
        vec![unchanged_o("pylink")],
    );
    // Reading the home: printed reversed, so a redactor cannot hide a successful read.
    for (name, file) in [
        ("read token", "token"),
        ("read worker-token", "worker-token"),
        ("read config.toml", "config.toml"),
    ] {
        add(
            name,
            sh(&format!("cat {}/{file} | rev", home.display())),
            vec![],
        );
    }
    add(
        "read token through $ORCH_WORKSPACE/../../..",
        sh("cat \"$ORCH_WORKSPACE/../../../token\" | rev; cat \"$ORCH_WORKSPACE/../../../token\""),
        vec![],
    );
    add(
        "sqlite3 orch.db",
        sh(&format!("sqlite3 {}/orch.db .dump | rev", home.display())),
        vec![],
    );
    add(
        "python sqlite3 orch.db",
        argv(&[
            "python3",
            "-c",
            &format!(
                "import sqlite3; print([r[0][::-1] for r in sqlite3.connect('{}/orch.db').execute('select title from tasks')])",
                home.display()
            ),
        ]),
        vec![],
    );
    // Writing the home.
    add(
        "append to config.toml",
        sh(&format!(
            "echo 'allow_shell = true' >> {}/config.toml",
            home.display()
        )),
        vec![Target::Unchanged(home.join("config.toml"))],
    );
    add(
        "overwrite another run's result.json",
        sh(&format!("echo '{{}}' > {}", w.p(&w.victim_result))),
        vec![Target::Unchanged(w.victim_result.clone())],
    );
    add(
        "append to this run's logs.txt",
        sh("echo ESCAPED-$((6 * 7))-LOGS >> \"$ORCH_WORKSPACE/../../../runs/$ORCH_TASK_ID/1/logs.txt\""),
        vec![],
    );
    add(
        "sqlite3 update another task",
        sh(&format!(
            "sqlite3 {}/orch.db \"update tasks set title = 'pwned' where id = 1\"",
            home.display()
        )),
        vec![],
    );
    add(
        "plant a file in the home",
        sh(&format!("touch {}/planted", home.display())),
        vec![Target::Absent(home.join("planted"))],
    );
    // The main checkout.
    add(
        "write the main checkout",
        sh(&format!("echo pwned >> {}/README.md", w.p(w.repo.path()))),
        vec![Target::Unchanged(w.repo.path().join("README.md"))],
    );
    add(
        "plant a file in the main checkout",
        argv(&["touch", &w.p(&w.repo.path().join("planted"))]),
        vec![Target::Absent(w.repo.path().join("planted"))],
    );
    add(
        "commit in the main checkout",
        argv(&[
            "git",
            "-C",
            &w.p(w.repo.path()),
            "commit",
            "--allow-empty",
            "-qm",
            "pwned",
        ]),
        vec![Target::Unchanged(
            w.repo.path().join(".git/refs/heads/main"),
        )],
    );
    // orch's own git: what a task plants for it must never run or move the main branch
    // (orch runs git outside the sandbox, so a payload that ran would leave its marker).
    let main_ref = || Target::Unchanged(w.repo.path().join(".git/refs/heads/main"));
    add(
        "replace .git with a repository whose fsmonitor runs a payload",
        sh(&format!(
            "rm -f .git && git init -q . && git config core.fsmonitor 'touch {}' && echo x > f",
            o("git-fsmonitor")
        )),
        vec![Target::Absent(w.outside("git-fsmonitor")), main_ref()],
    );
    add(
        "point .git at the main checkout's repository",
        sh(&format!(
            "printf 'gitdir: %s\\n' {} > .git && echo pwned > pwned.txt",
            w.p(&w.repo.path().join(".git"))
        )),
        vec![main_ref(), Target::Absent(w.repo.path().join("pwned.txt"))],
    );
    add(
        "plant a post-commit hook in the main repository",
        sh(&format!(
            "printf '#!/bin/sh\\ntouch {}\\n' > {hooks}/post-commit && chmod +x {hooks}/post-commit",
            o("git-hook"),
            hooks = w.p(&w.repo.path().join(".git/hooks"))
        )),
        vec![
            Target::Absent(w.outside("git-hook")),
            Target::Absent(w.repo.path().join(".git/hooks/post-commit")),
        ],
    );
    add(
        "hooksPath and a filter driver in the worktree's own git config",
        sh(&format!(
            "a=$(git rev-parse --git-dir) && mkdir -p h && printf '#!/bin/sh\\ntouch {hook}\\n' > h/post-commit \
             && chmod +x h/post-commit && printf '[core]\\n\\thooksPath = %s/h\\n[filter \"x\"]\\n\\tclean = touch {filter}\\n' \"$PWD\" > \"$a/config.worktree\" \
             && printf '[extensions]\\n\\tworktreeConfig = true\\n' >> \"$a/config\" ; printf '* filter=x\\n' > .gitattributes && echo y > g",
            hook = o("git-hookspath"),
            filter = o("git-filter"),
        )),
        vec![
            Target::Absent(w.outside("git-hookspath")),
            Target::Absent(w.outside("git-filter")),
        ],
    );
    add(
        "point the worktree's HEAD at the main branch",
        sh("echo 'ref: refs/heads/main' > \"$(git rev-parse --git-dir)/HEAD\" && echo z > z.txt"),
        vec![main_ref()],
    );
    // The user's real HOME.
    add(
        "write ~/.bashrc",
        sh(&format!(
            "echo pwned >> {}/.bashrc",
            w.p(w.real_home.path())
        )),
        vec![Target::Unchanged(w.real_home.path().join(".bashrc"))],
    );
    add(
        "write ~/.gitconfig",
        argv(&[
            "git",
            "config",
            "--file",
            &w.p(&w.real_home.path().join(".gitconfig")),
            "user.name",
            "pwned",
        ]),
        vec![Target::Unchanged(w.real_home.path().join(".gitconfig"))],
    );
    add(
        "plant a file in the real HOME",
        argv(&["touch", &w.p(&w.real_home.path().join(".planted"))]),
        vec![Target::Absent(w.real_home.path().join(".planted"))],
    );
    // The system and orch itself.
    add(
        "write /etc",
        argv(&["touch", "/etc/orch-escape-attempt"]),
        vec![Target::Absent(PathBuf::from("/etc/orch-escape-attempt"))],
    );
    add("change the hostname", sh("hostname orch-pwned"), vec![]);
    add("kill orch", sh("kill -KILL $PPID"), vec![]);
    add(
        "the daemon's API with a stolen token",
        sh(&format!(
            "curl -s -m 5 -H \"Authorization: Bearer $(cat {}/token)\" -H 'content-type: application/json' -d '{{\"title\":\"stolen\"}}' http://127.0.0.1:{}/v1/tasks",
            home.display(),
            w.port
        )),
        vec![],
    );
    add(
        "orch's tmux socket",
        sh(&format!(
            "tmux -S {}/tmux/socket new-session -d 'touch {}'",
            home.display(),
            o("tmux")
        )),
        vec![unchanged_o("tmux")],
    );
    metadata_attempts(w, &mut add);
    attempts
}

/// Changes of metadata only (Landlock does not cover them; the read-only mount tree does).
fn metadata_attempts(w: &World, add: &mut dyn FnMut(&str, String, Vec<Target>)) {
    let home = w.home.path();
    let o = |name: &str| w.p(&w.outside(name));
    let unchanged_o = |name: &str| Target::Unchanged(w.outside(name));
    add(
        "chmod 755 the home",
        argv(&["chmod", "755", &w.p(home)]),
        vec![Target::SameMode(home.to_owned())],
    );
    add(
        "chmod 644 the home's token",
        argv(&["chmod", "644", &w.p(&home.join("token"))]),
        vec![Target::Unchanged(home.join("token"))],
    );
    add(
        "touch the home's worker-token",
        argv(&["touch", &w.p(&home.join("worker-token"))]),
        vec![Target::Unchanged(home.join("worker-token"))],
    );
    add(
        "chmod 644 a private key in the real HOME",
        argv(&["chmod", "644", &w.p(&w.real_home.path().join("id_rsa"))]),
        vec![Target::Unchanged(w.real_home.path().join("id_rsa"))],
    );
    add(
        "touch a file of the main checkout",
        argv(&["touch", &w.p(&w.repo.path().join("NOTES.md"))]),
        vec![Target::Unchanged(w.repo.path().join("NOTES.md"))],
    );
    add(
        "chmod a file of ours in the temp dir",
        argv(&["chmod", "600", &o("chmod")]),
        vec![unchanged_o("chmod")],
    );
    add(
        "utimes (touch -d) a file outside",
        argv(&["touch", "-d", "2001-02-03", &o("utimes")]),
        vec![unchanged_o("utimes")],
    );
    add(
        "chown a file outside to ourselves",
        sh(&format!("chown $(id -u):$(id -g) {}", o("chown"))),
        vec![unchanged_o("chown")],
    );
    add(
        "setxattr on a file outside",
        argv(&[
            "python3",
            "-c",
            &format!(
                "import os; os.setxattr('{}', 'user.orch', b'pwned')",
                o("xattr")
            ),
        ]),
        vec![unchanged_o("xattr")],
    );
    add(
        "mkfifo outside",
        argv(&["mkfifo", &o("fifo")]),
        vec![Target::Absent(w.outside("fifo"))],
    );
    add(
        "mknod outside",
        argv(&["mknod", &o("null"), "c", "1", "3"]),
        vec![Target::Absent(w.outside("null"))],
    );
    add(
        "hard link between two files outside",
        argv(&["ln", &o("link-source"), &o("link-made")]),
        vec![
            unchanged_o("link-source"),
            Target::Absent(w.outside("link-made")),
        ],
    );
}

fn agent_attempts(w: &World) -> Vec<Attempt> {
    let home = w.home.path();
    let o = |name: &str| w.p(&w.outside(name));
    let unchanged_o = |name: &str| Target::Unchanged(w.outside(name));
    let write = |path: &str| format!("@write {path}\npwned\n@end\n");
    let mut attempts = vec![
        Attempt {
            name: "sim @write an absolute path outside".into(),
            steps: sim(&write(&o("sim-abs"))),
            targets: vec![unchanged_o("sim-abs")],
        },
        Attempt {
            name: "sim @write ../ out of the worktree".into(),
            steps: sim(&write(&format!("../../../../../../..{}", o("sim-rel")))),
            targets: vec![unchanged_o("sim-rel")],
        },
        Attempt {
            name: "sim @append config.toml".into(),
            steps: sim(&format!(
                "@append {}/config.toml\nallow_shell = true\n@end\n",
                home.display()
            )),
            targets: vec![Target::Unchanged(home.join("config.toml"))],
        },
        Attempt {
            name: "sim @write through a hard link made by the step before".into(),
            steps: format!(
                "{}{}",
                sh(&format!("ln {} hard", o("sim-hard"))),
                sim(&write("hard"))
            ),
            targets: vec![unchanged_o("sim-hard")],
        },
        Attempt {
            name: "sim @write through a symlink made by the step before".into(),
            steps: format!(
                "{}{}",
                sh(&format!("ln -s {} link", o("sim-link"))),
                sim(&write("link"))
            ),
            targets: vec![unchanged_o("sim-link")],
        },
        Attempt {
            name: "sim @append through a hard link to config.toml".into(),
            steps: format!(
                "{}{}",
                sh(&format!("ln {}/config.toml cfg", home.display())),
                sim("@append cfg\nallow_shell = true\n@end\n")
            ),
            targets: vec![Target::Unchanged(home.join("config.toml"))],
        },
        Attempt {
            name: "sim @write the main checkout".into(),
            steps: sim(&write(&w.p(&w.repo.path().join("README.md")))),
            targets: vec![Target::Unchanged(w.repo.path().join("README.md"))],
        },
        Attempt {
            name: "sim @write ~/.bashrc".into(),
            steps: sim(&write(&w.p(&w.real_home.path().join(".bashrc")))),
            targets: vec![Target::Unchanged(w.real_home.path().join(".bashrc"))],
        },
        Attempt {
            name: "sim @write another run's result.json".into(),
            steps: sim(&write(&w.p(&w.victim_result))),
            targets: vec![Target::Unchanged(w.victim_result.clone())],
        },
        Attempt {
            name: "sim @delete a file outside".into(),
            steps: sim(&format!("@delete {}\n", o("sim-delete"))),
            targets: vec![unchanged_o("sim-delete")],
        },
        Attempt {
            name: "sim @write a file into the home".into(),
            steps: sim(&write(&format!("{}/sim-planted", home.display()))),
            targets: vec![Target::Absent(home.join("sim-planted"))],
        },
    ];
    for attempt in &mut attempts {
        attempt.name = format!("agent: {}", attempt.name);
    }
    attempts
}

/// What an `Unchanged` target must keep.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    content: Vec<u8>,
    mode: u32,
    owner: (u32, u32),
    mtime: SystemTime,
    /// The inode change time (`st_ctime`, seconds and nanoseconds): moved by any chmod, chown,
    /// xattr or link count change.
    ctime: (i64, i64),
}

fn snapshot(path: &Path) -> Option<Snapshot> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some(Snapshot {
        content: std::fs::read(path).unwrap_or_default(),
        mode: meta.mode(),
        owner: (meta.uid(), meta.gid()),
        mtime: meta.modified().ok()?,
        ctime: (meta.ctime(), meta.ctime_nsec()),
    })
}

fn workflow(attempts: &[Attempt]) -> String {
    let mut yaml = String::from("name: escape\ndefaults:\n  retry: {max_attempts: 1}\ntasks:\n");
    for (index, attempt) in attempts.iter().enumerate() {
        yaml.push_str(&format!(
            "  - id: a{index}\n    title: {}\n    steps:\n{}",
            yaml_string(&attempt.name),
            attempt.steps
        ));
    }
    yaml
}

/// `orch serve ... --exit-when-idle` with extra arguments and environment, to exit code 0 (an
/// attempt that killed orch would show here).
fn serve_until_idle_with(home: &Home, args: &[&str], env: &[(&str, &str)]) {
    let mut all = vec![
        "serve",
        "--lease",
        "5s",
        "--grace",
        "1s",
        "--exit-when-idle",
    ];
    all.extend_from_slice(args);
    home.spawn_with_env(&all, env)
        .finish(SERVE_DEADLINE * 3)
        .expect_code(0, "orch serve --exit-when-idle");
}

fn sandbox_missing() -> Vec<String> {
    orch_process::support().missing()
}

#[test]
fn no_exec_or_agent_step_escapes_its_worktree() {
    let missing = sandbox_missing();
    if !missing.is_empty() {
        eprintln!(
            "this machine lacks {}: the escape suite checks the `required` refusal instead",
            missing.join(", ")
        );
        required_sandbox_refuses_at_claim_time_with_the_reason(&[("ORCH_SANDBOX", "required")]);
        return;
    }
    let w = world();
    // The committed Makefile, and the originals of every outside target.
    std::fs::write(
        w.repo.path().join("Makefile"),
        format!("escape:\n\techo pwned > {}\n", w.p(&w.outside("make"))),
    )
    .unwrap();
    w.repo.git(&["add", "Makefile"]);
    w.repo.git(&["commit", "-qm", "makefile"]);
    let mut attempts = exec_attempts(&w);
    let exec_count = attempts.len();
    attempts.extend(agent_attempts(&w));
    // One real CLI: Claude Code against the scripted model, asked to write outside with its
    // Write tool and its Bash tool, and to read the home's token.
    let claude = crate::real_agents::available("claude").then(|| {
        let script = format!(
            "conversations:\n  - match: \"orch-escape\"\n    turns:\n      - write: {{path: {}, content: \"pwned\\n\"}}\n      - run: {{command: {}}}\n      - say: {{text: \"done\"}}\n",
            yaml_string(&w.p(&w.outside("claude-write"))),
            yaml_string(&format!(
                "echo pwned > {}; cat {}/token | rev",
                w.p(&w.outside("claude-run")),
                w.home.path().display()
            )),
        );
        let model = crate::real_agents::Model::start(
            "claude",
            orch_modelsim::Script::from_yaml(&script).unwrap(),
            orch_modelsim::clienv::Settings::default(),
        );
        std::fs::write(
            w.repo.path().join(".orch.toml"),
            format!("allow_shell = true\n{}", model.config("claude", "")),
        )
        .unwrap();
        w.repo.git(&["add", ".orch.toml"]);
        w.repo.git(&["commit", "-qm", "claude"]);
        attempts.push(Attempt {
            name: "agent: claude Write and Bash outside, read the token".into(),
            steps: "      - agent: claude\n        prompt: \"orch-escape: write outside\"\n".into(),
            targets: vec![
                Target::Unchanged(w.outside("claude-write")),
                Target::Unchanged(w.outside("claude-run")),
            ],
        });
        model
    });
    for attempt in &attempts {
        for target in &attempt.targets {
            if let Target::Unchanged(path) = target {
                if path.starts_with(w.outside.path()) {
                    std::fs::write(path, "original\n").unwrap();
                }
            }
        }
    }
    let before: BTreeMap<PathBuf, Option<Snapshot>> = attempts
        .iter()
        .flat_map(|a| &a.targets)
        .filter_map(|t| match t {
            Target::Unchanged(path) | Target::SameMode(path) => {
                Some((path.clone(), snapshot(path)))
            }
            Target::Absent(_) => None,
        })
        .collect();
    let ids = w.home.submit("escape", &workflow(&attempts), w.repo.path());
    let listen = format!("127.0.0.1:{}", w.port);
    let real_home = w.p(w.real_home.path());
    let mut env: Vec<(&str, &str)> = vec![("HOME", real_home.as_str())];
    if let Some(model) = &claude {
        env.extend(model.env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
    serve_until_idle_with(&w.home, &["--listen", &listen, "--workers", "2"], &env);

    let mut escaped = Vec::new();
    for (index, attempt) in attempts.iter().enumerate() {
        for target in &attempt.targets {
            match target {
                Target::Unchanged(path) => {
                    let after = snapshot(path);
                    if after != before[path] {
                        escaped.push(format!(
                            "{}: changed {}: {:?} -> {:?}",
                            attempt.name,
                            path.display(),
                            before[path]
                                .as_ref()
                                .map(|s| (s.mode, s.owner, s.mtime, s.ctime)),
                            after.as_ref().map(|s| (s.mode, s.owner, s.mtime, s.ctime)),
                        ));
                    }
                }
                Target::SameMode(path) => {
                    let mode = |s: &Option<Snapshot>| s.as_ref().map(|s| (s.mode, s.owner));
                    if mode(&snapshot(path)) != mode(&before[path]) {
                        escaped.push(format!(
                            "{}: changed the mode of {}",
                            attempt.name,
                            path.display()
                        ));
                    }
                }
                Target::Absent(path) => {
                    if std::fs::symlink_metadata(path).is_ok() {
                        escaped.push(format!("{}: created {}", attempt.name, path.display()));
                    }
                }
            }
        }
        let id = ids[&format!("a{index}")];
        let run = w.home.run_dir(id, 1);
        if !run.join("result.json").is_file() {
            escaped.push(format!("{}: its run left no result.json", attempt.name));
        }
    }
    // Nothing the tasks left holds a secret, read or reversed: their bundles, scratch areas and
    // worktrees (the victim's own are left out: its title is one of the secrets).
    let mut left: Vec<PathBuf> = Vec::new();
    let files_if_any = |dir: &Path| {
        if dir.is_dir() {
            files_under(dir)
        } else {
            Vec::new()
        }
    };
    for id in ids.values() {
        let run = w.home.run_dir(*id, 1);
        left.extend(files_if_any(&run));
        left.extend(files_if_any(
            &w.home.path().join("scratch").join(id.to_string()),
        ));
        if run.join("logs.txt").is_file() {
            left.extend(files_if_any(&crate::support::workspace_of(&run)));
        }
    }
    for secret in &w.secrets {
        let reversed: String = secret.chars().rev().collect();
        for file in &left {
            let text =
                String::from_utf8_lossy(&std::fs::read(file).unwrap_or_default()).into_owned();
            if text.contains(secret.as_str()) || text.contains(&reversed) {
                escaped.push(format!("a secret was read: found in {}", file.display()));
            }
        }
    }
    for id in ids.values() {
        let logs =
            std::fs::read_to_string(w.home.run_dir(*id, 1).join("logs.txt")).unwrap_or_default();
        if logs.contains("ESCAPED-42-LOGS") {
            escaped.push(format!("task {id} wrote its bundle's logs.txt"));
        }
    }
    let stolen = w
        .home
        .query_int("SELECT count(*) FROM tasks WHERE title IN ('stolen', 'pwned')");
    if stolen != 0 {
        escaped.push(format!(
            "{stolen} task(s) made or renamed through the database or the API"
        ));
    }
    if std::fs::read_to_string("/proc/sys/kernel/hostname").is_ok_and(|h| h.contains("orch-pwned"))
    {
        escaped.push("the hostname was changed".into());
    }
    let tried = attempts.len();
    println!("{tried} tried, {} escaped", escaped.len());
    assert!(
        exec_count >= 50 && tried - exec_count >= 10 && tried >= 60,
        "{exec_count} exec, {} agent",
        tried - exec_count
    );
    if claude.is_some() {
        let id = ids[&format!("a{}", tried - 1)];
        let task = w.home.task(id);
        // The session ran to its end: the tools were tried and refused by the kernel.
        assert_eq!(task["task"]["status"], "done", "{task:#}");
        let events =
            std::fs::read_to_string(w.home.run_dir(id, 1).join("steps/step-1/events.jsonl"))
                .unwrap_or_default()
                .to_lowercase();
        assert!(
            events.contains("permission denied") || events.contains("eacces"),
            "claude's tools were refused by the kernel: {events}"
        );
    }
    assert!(escaped.is_empty(), "escapes:\n{}", escaped.join("\n"));
    // The suite is not vacuous: the tasks ran (a refusal at claim time would also leave the
    // targets alone).
    let sample = read_json(&w.home.run_dir(ids["a0"], 1).join("result.json"));
    assert_ne!(
        sample["error"].as_str().unwrap_or_default(),
        "",
        "tee into a read-only file fails: {sample:#}"
    );
}

/// `sandbox = "required"` on a machine that cannot give it (forced here with
/// `ORCH_SANDBOX_UNSUPPORTED`, which the config module reads) refuses the task at claim time,
/// before a worktree is made, naming what is missing; `best_effort` runs it with a warning.
fn required_sandbox_refuses_at_claim_time_with_the_reason(env: &[(&str, &str)]) {
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let yaml = "tasks:\n  - id: t\n    title: confined\n    steps:\n      - exec:\n          - argv: [\"true\"]\n";
    let id = home.submit("refused", yaml, repo.path())["t"];
    serve_until_idle_with(&home, &[], env);
    let task = home.task(id);
    assert_eq!(task["task"]["status"], "failed", "{task:#}");
    let reason = task["task"]["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("the sandbox is required") && reason.contains("Landlock"),
        "{reason}"
    );
    assert!(
        !home.path().join("worktrees").exists()
            || files_under(&home.path().join("worktrees")).is_empty(),
        "no worktree is made for a refused task"
    );

    let id = home.submit("best", yaml, repo.path())["t"];
    let mut best: Vec<(&str, &str)> = env
        .iter()
        .copied()
        .filter(|(k, _)| *k != "ORCH_SANDBOX")
        .collect();
    best.push(("ORCH_SANDBOX", "best_effort"));
    serve_until_idle_with(&home, &[], &best);
    assert_eq!(home.task(id)["task"]["status"], "done");
    let logs = std::fs::read_to_string(home.run_dir(id, 1).join("logs.txt")).unwrap();
    assert!(
        logs.contains("best_effort") && logs.contains("lacks"),
        "{logs}"
    );
}

#[test]
fn a_machine_without_the_sandbox_refuses_required_tasks_at_claim_time() {
    required_sandbox_refuses_at_claim_time_with_the_reason(&[
        ("ORCH_SANDBOX", "required"),
        ("ORCH_SANDBOX_UNSUPPORTED", "1"),
    ]);
}

#[test]
fn a_step_without_network_cannot_reach_the_hosts_loopback_and_one_with_it_can() {
    if sandbox_missing().iter().any(|m| m.contains("namespaces")) {
        eprintln!("no network namespaces here: `network: false` cannot be shown");
        return;
    }
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "# project\n")]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
    let yaml = format!(
        "tasks:\n  - id: off\n    title: offline\n    steps:\n      - network: false\n        exec:\n          - argv: [bash, -c, {0}]\n  - id: on\n    title: online\n    steps:\n      - exec:\n          - argv: [bash, -c, {0}]\n",
        yaml_string(&connect)
    );
    std::fs::write(repo.path().join(".orch.toml"), "allow_shell = true\n").unwrap();
    repo.git(&["add", ".orch.toml"]);
    repo.git(&["commit", "-qm", "shell"]);
    let ids = home.submit("network", &yaml, repo.path());
    home.serve_until_idle(1);
    let off = home.task(ids["off"]);
    let on = home.task(ids["on"]);
    assert_eq!(on["task"]["status"], "done", "{on:#}");
    assert_eq!(off["task"]["status"], "failed", "{off:#}");
    let stderr =
        std::fs::read_to_string(home.run_dir(ids["off"], 1).join("steps/step-1/stderr.log"))
            .unwrap_or_default();
    assert!(
        stderr.contains("Network is unreachable") || stderr.contains("Connection refused"),
        "{stderr}"
    );
}
