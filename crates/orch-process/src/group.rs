//! Process groups: signal and stop a whole group, the registry of live groups under a home, and
//! the sweeps a restarting daemon or worker runs to stop what a dead one left behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

/// The variable every task process carries: its run id, for the sweeps.
pub const RUN_ID_VAR: &str = "ORCH_RUN_ID";

/// The variable every task process carries: its task's scratch area under the home
/// (`<home>/scratch/<task>`), so a sweep finds only this home's processes.
pub const SCRATCH_VAR: &str = "ORCH_SCRATCH";

/// How often a stopped group is checked for members left during the grace period.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// Send `signal` to every process of `group`; a group that is gone already is fine.
pub fn signal_group(group: Pid, signal: Signal) {
    match killpg(group, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => {
            let group = group.as_raw();
            tracing::warn!(group, %signal, %error, "could not signal a process group");
        }
    }
}

/// Some live process of the group still exists. Zombies do not count: they are dead and only
/// wait for their parent (often pid 1, which may never reap them) to collect them.
pub fn group_exists(group: Pid) -> bool {
    if matches!(killpg(group, None), Err(Errno::ESRCH)) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .any(|pid| {
            matches!(process_group_and_state(pid),
                Some((pgrp, state)) if pgrp == group.as_raw() && state != 'Z')
        })
}

/// SIGTERM to the whole group; once the leader has exited, the rest of the group gets what is
/// left of `grace` to exit too; then SIGKILL. Returns the leader's status (it is always reaped).
pub async fn stop_group(
    child: &mut tokio::process::Child,
    group: Pid,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    signal_group(group, Signal::SIGTERM);
    let grace_deadline = Instant::now() + grace;
    let leader = tokio::select! {
        status = child.wait() => Some(status?),
        () = tokio::time::sleep_until(grace_deadline) => None,
    };
    if leader.is_some() {
        while group_exists(group) && Instant::now() < grace_deadline {
            tokio::time::sleep(GROUP_POLL.min(grace_deadline - Instant::now())).await;
        }
    }
    signal_group(group, Signal::SIGKILL);
    match leader {
        Some(status) => Ok(status),
        None => child.wait().await,
    }
}

/// A process's group and state letter from `/proc/<pid>/stat`.
fn process_group_and_state(pid: i32) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; the fields after its last `)` are
    // `state ppid pgrp ...`.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((pgrp, state))
}

/// Record `group` in the registry `dir` (a file named by the group id); the path to remove when
/// it ends. A failure is logged: the sweep by environment still finds the group.
pub fn register(dir: &Path, group: Pid) -> Option<PathBuf> {
    let path = dir.join(group.as_raw().to_string());
    match std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, b"")) {
        Ok(()) => Some(path),
        Err(error) => {
            tracing::warn!(%error, "could not record the process group in {}", path.display());
            None
        }
    }
}

fn live_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn environment(pid: i32) -> Vec<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).map(<[u8]>::to_vec).collect())
        .unwrap_or_default()
}

/// Kill every process group holding a process of one of `runs` (by [`RUN_ID_VAR`]) whose
/// [`SCRATCH_VAR`] lies under `scratch_root` (this home's `scratch/`, so another home's run with
/// the same number is never touched). This catches what the registry cannot: a command started
/// in the instant between its spawn and its registration when the daemon died. Returns the
/// groups killed.
pub fn kill_processes_of_runs(scratch_root: &Path, runs: &[i64]) -> Vec<i32> {
    if runs.is_empty() {
        return Vec::new();
    }
    let prefix = format!("{SCRATCH_VAR}={}/", scratch_root.display());
    let run_prefix = format!("{RUN_ID_VAR}=");
    let mut killed = Vec::new();
    for pid in live_pids() {
        let Some((group, state)) = process_group_and_state(pid) else {
            continue;
        };
        if state == 'Z' || killed.contains(&group) || group <= 1 {
            continue;
        }
        let vars = environment(pid);
        let in_home = vars.iter().any(|v| v.starts_with(prefix.as_bytes()));
        let run = vars
            .iter()
            .find_map(|v| v.strip_prefix(run_prefix.as_bytes()))
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok());
        if in_home && run.is_some_and(|r| runs.contains(&r)) {
            signal_group(Pid::from_raw(group), Signal::SIGKILL);
            killed.push(group);
        }
    }
    killed
}

/// Kill the process groups recorded in `registry` by a daemon or worker that died (kill -9
/// leaves its commands running), then forget them. A group is killed only if one of its live
/// members carries [`RUN_ID_VAR`] in its environment, so a recycled group id of an unrelated
/// process is never touched. Returns the groups killed.
pub fn kill_orphaned_groups(registry: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(registry) else {
        return Vec::new();
    };
    let run_prefix = format!("{RUN_ID_VAR}=");
    let mut killed = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Some(group) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let ours = live_pids()
            .into_iter()
            .filter(|pid| {
                matches!(process_group_and_state(*pid),
                    Some((pgrp, state)) if pgrp == group && state != 'Z')
            })
            .any(|pid| {
                environment(pid)
                    .iter()
                    .any(|var| var.starts_with(run_prefix.as_bytes()))
            });
        if ours {
            signal_group(Pid::from_raw(group), Signal::SIGKILL);
            killed.push(group);
        }
        let _ = std::fs::remove_file(entry.path());
    }
    killed
}
