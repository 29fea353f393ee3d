//! Faults of the machine: with the disk full, submissions are refused with the cause (507), a
//! running task keeps its outcome and delivers it when space returns, and no attempt is spent.
//!
//! The home is a small tmpfs (mounted for the test; the suite runs as root), so the database,
//! the bundles and the worktrees all run out of space together.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::support::{poll_until, task_events, Home, Repo, COMMAND_DEADLINE, SERVE_DEADLINE};

/// A tmpfs mounted on a directory for the test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. `16m`) on `dir`; `None` when this machine cannot (not
    /// root): the test is skipped locally and fails in CI.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Tmpfs {
                dir: dir.to_owned(),
            }),
            other => {
                let why = format!("cannot mount a tmpfs on {} ({other:?})", dir.display());
                assert!(std::env::var_os("CI").is_none(), "{why}; CI runs as root");
                println!("skipped: {why}; run as root to test a full disk");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process that still has a file open there does not keep the mount.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fill the file system holding `file` to the last byte; returns how much was written.
fn fill(file: &Path) -> u64 {
    let mut out = std::fs::File::create(file).expect("create the filler");
    let mut written = 0;
    for chunk in [1 << 20, 4096, 512, 1] {
        let bytes = vec![0u8; chunk];
        while out.write_all(&bytes).and_then(|()| out.flush()).is_ok() {
            written += chunk as u64;
        }
    }
    let _ = out.sync_all();
    written
}

#[test]
fn with_the_disk_full_submissions_are_refused_with_the_cause_and_running_tasks_deliver_later() {
    let home = Home::new();
    let Some(_tmpfs) = Tmpfs::mount(home.path(), "24m") else {
        return;
    };
    let repo = Repo::new(&[("a.txt", "a\n")]);
    let serve = home.serve(&["--workers", "1", "--lease", "30s", "--grace", "1s"]);
    poll_until("the daemon's API", SERVE_DEADLINE, || {
        home.path().join("serve.addr").exists().then_some(())
    });
    let yaml = "name: slow\ntasks:\n  - id: slow\n    title: slow\n    steps:\n      - name: wait\n        exec:\n          - argv: [sleep, '3']\n";
    let task = home.submit("slow.yml", yaml, repo.path())["slow"];
    // The step has started once its directory in the run's bundle exists.
    let step_dir = home.run_dir(task, 1).join("steps").join("wait");
    poll_until("the step to start", SERVE_DEADLINE, || {
        step_dir.exists().then_some(())
    });
    let step_started = SystemTime::now();
    let filler = home.path().join("filler");
    let written = fill(&filler);
    println!("filled the home with {written} bytes");
    // A submission is refused with the cause, not a bare 500.
    let refused = home.run(&["task", "add", "no room for me"]);
    assert_ne!(refused.code, Some(0), "the submission was refused");
    assert!(
        refused.stderr.contains("507") && refused.stderr.contains("the disk is full"),
        "the refusal names the cause: {}",
        refused.stderr
    );
    // The step ends while the disk is full: the outcome cannot be recorded yet, and the task
    // waits for it (running, its lease kept) instead of failing or being lost.
    let step_over = step_started + Duration::from_secs(5);
    poll_until("the step to be over", COMMAND_DEADLINE, || {
        (SystemTime::now() > step_over).then_some(())
    });
    let held = home.task(task);
    assert_eq!(held["task"]["status"], "running", "{held}");
    // Space returns: the outcome is delivered.
    std::fs::remove_file(&filler).expect("free the space");
    let done = poll_until("the outcome to be delivered", SERVE_DEADLINE, || {
        let task = home.task(task);
        (task["task"]["status"] != "running").then_some(task)
    });
    assert_eq!(done["task"]["status"], "done", "{done}");
    assert_eq!(
        done["task"]["attempts_used"], 1,
        "no attempt was spent: {done}"
    );
    assert!(
        task_events(&done, "lose").is_empty(),
        "the run was never lost: {done}"
    );
    assert!(
        task_events(&done, "fail").is_empty(),
        "the run never failed: {done}"
    );
    // Submissions work again.
    home.run(&["task", "add", "room again"])
        .expect_code(0, "a submission after space returned");
    serve.signal(nix::sys::signal::Signal::SIGTERM);
    let stopped = serve.finish(SERVE_DEADLINE);
    // The outcome was really held up by the full disk, and neither the worker's retries nor
    // the scheduler (when its writes fail too; SQLite may still fit a small write into its WAL)
    // log every attempt: once per doubling of the failures in a row.
    let held_up = stopped
        .stderr
        .matches("could not report the outcome")
        .count();
    println!("`could not report the outcome`: logged {held_up} time(s)");
    assert!(
        (1..=8).contains(&held_up),
        "the failed deliveries are logged at each doubling: {held_up}:\n{}",
        stopped.stderr
    );
    for duty in [
        "renewing the scheduler lease failed",
        "scheduler pass failed",
    ] {
        let logged = stopped.stderr.matches(duty).count();
        println!("`{duty}`: logged {logged} time(s)");
        assert!(
            logged <= 8,
            "`{duty}` logged {logged} times:\n{}",
            stopped.stderr
        );
    }
    home.assert_consistent("after the disk was full");
}
