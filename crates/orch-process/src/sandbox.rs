//! The OS sandbox for everything a task runs (Linux): Landlock, a user namespace (and a network
//! namespace for `network: false`), a mount namespace that hides orch's unix sockets, and
//! resource limits, all applied in the forked child before `exec`.
//!
//! What it enforces, given a [`SandboxPolicy`]:
//! - **Files (Landlock, an allow-list).** Read and execute everywhere except under the `hidden`
//!   paths (orch's home, the daemon user's real `HOME`): every ancestor of a hidden path is walked
//!   and each sibling entry not on the way to it is granted read, so `/usr`, `/etc`, `/tmp` stay
//!   readable while `/root` (say) does not. `read_only` paths are granted read again (the main
//!   checkout, the install directories of allowed binaries); `read_write` paths (the worktree,
//!   its git admin dir and objects, the task's scratch area) and a few device nodes are granted
//!   everything. Nothing else can be written, created, removed, renamed or linked.
//! - **Signals and abstract unix sockets (Landlock scoping, ABI 6).** A task cannot signal orch
//!   or any process outside its own sandbox, nor connect to an abstract unix socket made outside.
//! - **Metadata (a read-only mount tree).** Landlock up to ABI 7 does not cover `chmod`,
//!   `chown`, `utimensat` or xattrs, and the identity map below makes the task the owner of
//!   everything orch's user owns (all of `/etc` when orch is root). So the task always gets its
//!   own mount namespace in which `/` is made private and every mount read-only
//!   (`mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)`); each `read_write` path is then bound
//!   onto itself and made writable again. Metadata changes elsewhere fail with `EROFS`; device
//!   nodes (`/dev/null`, ttys) stay writable, as the kernel does not apply `EROFS` to them. The
//!   working directory is entered again afterwards, so it stands on the writable bind. A
//!   `rename` or `link` between two writable paths crosses mounts (`EXDEV`). Without
//!   `mount_setattr` (Linux < 5.12) there is no fallback: [`Support::read_only_mounts`] says so,
//!   `required` refuses and `best_effort` warns (a fallback remounting each mount of
//!   `/proc/self/mountinfo` would need that file parsed, and so memory allocated, in the child).
//! - **Privileges (user namespace).** The task runs in a new user namespace with a one-line
//!   identity map of orch's uid and gid: even when orch runs as root, the task has no capability
//!   in the host's namespaces (no reboot, module loading, mounts, raw sockets on the host).
//!   Its capability bounding set is emptied, so a task that is uid 0 in its namespace gets no
//!   capability there either at `exec` (with one it could clear the read-only flags again;
//!   Landlock does not stop `mount_setattr`). A nested user namespace it makes gets a copy of
//!   the mounts with the read-only flags locked. `no_new_privs` is set, so set-uid binaries do
//!   not raise privileges either.
//! - **Network (`network: false`).** A new network namespace holding only a loopback that is
//!   down: nothing can be reached, not even the host's 127.0.0.1.
//! - **Unix sockets under the home (mount namespace).** Landlock below ABI 9 does not stop a
//!   `connect` to an existing pathname socket, so each `masked` directory (orch's tmux socket
//!   directory) gets an empty read-only tmpfs mounted over it in the task's own mount namespace.
//! - **Resources (rlimits).** CPU seconds, address space, processes and file size per process
//!   (see [`Limits`]; the kernel does not apply the process limit to the root user).
//!
//! What it does not do: reads of world-readable files outside the hidden paths are allowed (the
//! task can read `/etc/passwd`, other users' world-readable files, `/proc` of its own processes);
//! with the network on, any address can be reached (orch's API is protected by its token,
//! which the task cannot read); cgroup v2 limits are not used.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use landlock::{
    path_beneath_rules, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope, ABI,
};
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use serde::{Deserialize, Serialize};

pub(crate) mod child;

/// Resource limits of one sandboxed process (each of its children gets the same, per process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// CPU time in seconds (`RLIMIT_CPU`); the process gets SIGXCPU, then SIGKILL.
    pub cpu_seconds: Option<u64>,
    /// Address space in bytes (`RLIMIT_AS`). Runtimes such as node and the JVM reserve large
    /// ranges of address space they never touch, so keep this generous.
    pub memory_bytes: Option<u64>,
    /// Processes of the user (`RLIMIT_NPROC`); not enforced by the kernel for root.
    pub processes: Option<u64>,
    /// Largest file the process may write, in bytes (`RLIMIT_FSIZE`).
    pub file_size_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_seconds: Some(4 * 3600),
            memory_bytes: Some(64 << 30),
            processes: Some(4096),
            file_size_bytes: Some(8 << 30),
        }
    }
}

/// What a sandboxed process may do. Paths need not be canonical; missing ones are skipped.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SandboxPolicy {
    /// Read, write, create, remove, execute below each.
    pub read_write: Vec<PathBuf>,
    /// Read and execute below each, also inside a hidden path.
    pub read_only: Vec<PathBuf>,
    /// Nothing below these is readable unless granted above (orch's home, the real `HOME`).
    pub hidden: Vec<PathBuf>,
    /// Directories covered by an empty read-only tmpfs in the process's own mount namespace
    /// (unix sockets under the home: Landlock before ABI 9 does not stop a connect).
    pub masked: Vec<PathBuf>,
    /// Reach the network; without it, a network namespace with only a down loopback.
    pub network: bool,
    /// Resource limits.
    pub limits: Limits,
}

/// How a process is confined: a closed set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sandbox {
    /// No sandbox (orch's own helpers; or `sandbox = "off"`).
    #[default]
    Off,
    /// Confined by the policy, with every layer the machine supports ([`support`]).
    Enforced(SandboxPolicy),
}

/// Device nodes every sandboxed process may read and write (CLIs open them by name).
const DEVICES: [&str; 8] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
];

/// What the machine can enforce, probed once per process ([`support`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    /// The Landlock file-system rights level (1, 2, 3 or 5), `None` without Landlock.
    pub landlock_fs: Option<u8>,
    /// Landlock scoping of signals and abstract unix sockets (ABI 6).
    pub landlock_scoping: bool,
    /// User namespaces (with network and mount namespaces inside) can be created;
    /// otherwise why not.
    pub namespaces: Result<(), String>,
    /// The mount tree can be made read-only in the task's mount namespace (`mount_setattr`,
    /// Linux 5.12); otherwise why not.
    pub read_only_mounts: Result<(), String>,
}

impl Support {
    /// A machine with nothing (for `ORCH_SANDBOX_UNSUPPORTED`, to test the refusal path).
    pub fn nothing(why: &str) -> Support {
        Support {
            landlock_fs: None,
            landlock_scoping: false,
            namespaces: Err(why.to_owned()),
            read_only_mounts: Err(why.to_owned()),
        }
    }

    /// What is missing for the full sandbox, one phrase each; empty when everything is there.
    pub fn missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        if self.landlock_fs.is_none() {
            missing.push(
                "Landlock (the kernel lacks it or it is not in the `lsm=` boot list)".to_owned(),
            );
        } else if !self.landlock_scoping {
            missing.push("Landlock scoping of signals (Landlock ABI 6, Linux 6.12)".to_owned());
        }
        if let Err(why) = &self.namespaces {
            missing.push(format!("user namespaces ({why})"));
        } else if let Err(why) = &self.read_only_mounts {
            missing.push(format!(
                "a read-only mount tree, which stops chmod/touch outside the worktree ({why})"
            ));
        }
        missing
    }

    /// One line for logs: what is enforced.
    pub fn describe(&self) -> String {
        let landlock = match self.landlock_fs {
            Some(level) if self.landlock_scoping => {
                format!("Landlock (file rights of ABI {level}, scoping)")
            }
            Some(level) => format!("Landlock (file rights of ABI {level})"),
            None => "no Landlock".to_owned(),
        };
        let namespaces = match (&self.namespaces, &self.read_only_mounts) {
            (Ok(()), Ok(())) => "user, network and mount namespaces; read-only mounts".to_owned(),
            (Ok(()), Err(why)) => {
                format!("user, network and mount namespaces; no read-only mounts ({why})")
            }
            (Err(why), _) => format!("no namespaces ({why})"),
        };
        format!("{landlock}; {namespaces}; rlimits")
    }
}

/// What this machine supports, probed on first use: Landlock through the crate (a ruleset made
/// with each level as a hard requirement), namespaces by starting `true` in new ones.
pub fn support() -> &'static Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    SUPPORT.get_or_init(probe)
}

fn probe() -> Support {
    let landlock_fs = [5u8, 3, 2, 1].into_iter().find(|level| {
        Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(ABI::from(i32::from(*level))))
            .and_then(|ruleset| ruleset.create())
            .is_ok()
    });
    let landlock_scoping = landlock_fs.is_some()
        && Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .scope(Scope::from_all(ABI::V6))
            .and_then(|ruleset| ruleset.create())
            .is_ok();
    let namespaces = probe_namespaces(false);
    let read_only_mounts = match &namespaces {
        Ok(()) => probe_namespaces(true),
        Err(_) => Err("no mount namespace".to_owned()),
    };
    Support {
        landlock_fs,
        landlock_scoping,
        namespaces,
        read_only_mounts,
    }
}

/// Start `true` in new namespaces (and with the mount tree read-only when `read_only`).
fn probe_namespaces(read_only: bool) -> Result<(), String> {
    let program = ["/usr/bin/true", "/bin/true"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .ok_or("no `true` binary to probe with")?;
    let prepared = Prepared {
        rlimits: Vec::new(),
        unshare: Some(
            CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS,
        ),
        id_maps: Some(IdMaps::current()),
        masked: Vec::new(),
        read_only_root: read_only.then(|| ReadOnlyRoot {
            writable: Vec::new(),
            cwd: None,
            last_cap: last_cap(),
        }),
        ruleset: None,
    };
    let mut command = std::process::Command::new(program);
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    child::install(&mut command, prepared);
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("a probe in new namespaces ended with {status}")),
        Err(error) if read_only && error.raw_os_error() == Some(libc::ENOSYS) => {
            Err("the kernel has no mount_setattr (Linux 5.12)".to_owned())
        }
        Err(error) if read_only => Err(format!("mount_setattr refused: {error}")),
        Err(error) => Err(format!("unshare refused: {error}")),
    }
}

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`).
fn last_cap() -> libc::c_ulong {
    static LAST: OnceLock<libc::c_ulong> = OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            // CAP_CHECKPOINT_RESTORE, the last of Linux 5.9 to 6.x.
            .unwrap_or(40)
    })
}

/// Why a sandbox could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The Landlock ruleset could not be built.
    #[error("could not build the Landlock ruleset: {0}")]
    Landlock(#[from] landlock::RulesetError),
    /// A path contains a NUL byte.
    #[error("the path {0} contains a NUL byte")]
    Path(PathBuf),
}

/// Everything the child needs, made in the parent so that the child only makes syscalls.
pub(crate) struct Prepared {
    pub(crate) rlimits: Vec<(Resource, u64)>,
    pub(crate) unshare: Option<CloneFlags>,
    pub(crate) id_maps: Option<IdMaps>,
    pub(crate) masked: Vec<CString>,
    /// Make every mount read-only, then bind the writable paths writable again.
    pub(crate) read_only_root: Option<ReadOnlyRoot>,
    /// The Landlock ruleset (close-on-exec, as the kernel makes it).
    pub(crate) ruleset: Option<OwnedFd>,
}

/// The read-only mount tree of a sandboxed process (see [`SandboxPolicy`]'s module docs).
pub(crate) struct ReadOnlyRoot {
    /// Canonical `read_write` paths, each bound onto itself and made writable; a path inside
    /// another is left out (the outer bind is recursive).
    pub(crate) writable: Vec<CString>,
    /// The absolute working directory, entered again once the binds are in place.
    pub(crate) cwd: Option<CString>,
    /// The highest capability number (`/proc/sys/kernel/cap_last_cap`), for emptying the
    /// bounding set.
    pub(crate) last_cap: libc::c_ulong,
}

/// The one-line identity maps of orch's uid and gid, as written to `/proc/self/{u,g}id_map`.
pub(crate) struct IdMaps {
    pub(crate) uid_map: Vec<u8>,
    pub(crate) gid_map: Vec<u8>,
}

impl IdMaps {
    fn current() -> IdMaps {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        IdMaps {
            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
        }
    }
}

impl SandboxPolicy {
    /// Build what the child applies, with the layers `support` has; `cwd` is the working
    /// directory the process is given (its parent's when `None`).
    pub(crate) fn prepare(
        &self,
        support: &Support,
        cwd: Option<&Path>,
    ) -> Result<Prepared, SandboxError> {
        let limits = &self.limits;
        let rlimits = [
            (Resource::RLIMIT_CPU, limits.cpu_seconds),
            (Resource::RLIMIT_AS, limits.memory_bytes),
            (Resource::RLIMIT_NPROC, limits.processes),
            (Resource::RLIMIT_FSIZE, limits.file_size_bytes),
        ]
        .into_iter()
        .filter_map(|(resource, value)| {
            // A limit above the current hard limit could not be set by an unprivileged orch.
            let hard = nix::sys::resource::getrlimit(resource).map_or(u64::MAX, |(_, hard)| hard);
            Some((resource, value?.min(hard)))
        })
        .collect();
        let namespaces = support.namespaces.is_ok();
        let masked: Vec<CString> = if namespaces {
            self.masked
                .iter()
                .filter(|path| path.is_dir())
                .map(|path| {
                    CString::new(path.as_os_str().as_bytes())
                        .map_err(|_| SandboxError::Path(path.clone()))
                })
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let read_only_root = if namespaces && support.read_only_mounts.is_ok() {
            Some(self.read_only_root(cwd)?)
        } else {
            None
        };
        let unshare = namespaces.then(|| {
            let mut flags = CloneFlags::CLONE_NEWUSER;
            if !self.network {
                flags |= CloneFlags::CLONE_NEWNET;
            }
            if !masked.is_empty() || read_only_root.is_some() {
                flags |= CloneFlags::CLONE_NEWNS;
            }
            flags
        });
        let ruleset = match support.landlock_fs {
            Some(level) => self.ruleset(level, support.landlock_scoping)?,
            None => None,
        };
        Ok(Prepared {
            rlimits,
            unshare,
            id_maps: namespaces.then(IdMaps::current),
            masked,
            read_only_root,
            ruleset,
        })
    }

    /// The writable binds (canonical, outermost first, nested ones left out; missing paths are
    /// skipped as Landlock skips them) and the absolute working directory.
    fn read_only_root(&self, cwd: Option<&Path>) -> Result<ReadOnlyRoot, SandboxError> {
        let mut paths: Vec<PathBuf> = self
            .read_write
            .iter()
            .filter_map(|path| std::fs::canonicalize(path).ok())
            .collect();
        paths.sort();
        paths.dedup();
        let mut outermost: Vec<PathBuf> = Vec::new();
        for path in paths {
            if !outermost.iter().any(|outer| path.starts_with(outer)) {
                outermost.push(path);
            }
        }
        let c_path = |path: &Path| {
            CString::new(path.as_os_str().as_bytes())
                .map_err(|_| SandboxError::Path(path.to_owned()))
        };
        let writable = outermost
            .iter()
            .map(|path| c_path(path))
            .collect::<Result<_, _>>()?;
        let cwd = match cwd {
            Some(dir) if dir.is_absolute() => Some(dir.to_owned()),
            Some(dir) => std::env::current_dir().ok().map(|here| here.join(dir)),
            None => std::env::current_dir().ok(),
        };
        Ok(ReadOnlyRoot {
            writable,
            cwd: cwd.as_deref().map(c_path).transpose()?,
            last_cap: last_cap(),
        })
    }

    fn ruleset(&self, level: u8, scoping: bool) -> Result<Option<OwnedFd>, SandboxError> {
        let abi = ABI::from(i32::from(level));
        let all = AccessFs::from_all(abi);
        let read = AccessFs::from_read(abi);
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(all)?;
        if scoping {
            ruleset = ruleset.scope(Scope::from_all(ABI::V6))?;
        }
        let writable = self
            .read_write
            .iter()
            .map(PathBuf::as_path)
            .chain(DEVICES.iter().map(Path::new));
        let created = ruleset
            .create()?
            .add_rules(path_beneath_rules(readable_roots(&self.hidden), read))?
            .add_rules(path_beneath_rules(&self.read_only, read))?
            .add_rules(path_beneath_rules(writable, all))?;
        Ok(created.into())
    }
}

/// The directories and files to grant read so that everything is readable except what lies
/// under `hidden`: `/` minus each hidden path, expressed as the siblings of the path's ancestors.
/// An entry that resolves (through symbolic links) into a hidden path, or to one of its
/// ancestors, is left out, so `/srv/link -> /root` opens nothing.
pub fn readable_roots(hidden: &[PathBuf]) -> Vec<PathBuf> {
    let hidden: Vec<PathBuf> = hidden
        .iter()
        .filter_map(|path| std::fs::canonicalize(path).ok())
        .collect();
    let mut roots = vec![PathBuf::from("/")];
    for secret in &hidden {
        let Some(index) = roots.iter().position(|root| secret.starts_with(root)) else {
            continue;
        };
        let root = roots.swap_remove(index);
        let mut current = root.clone();
        let below = secret.strip_prefix(&root).unwrap_or(Path::new(""));
        for component in below.components() {
            let next = current.join(component);
            if let Ok(entries) = std::fs::read_dir(&current) {
                roots.extend(
                    entries
                        .filter_map(Result::ok)
                        .map(|entry| entry.path())
                        .filter(|path| *path != next),
                );
            }
            current = next;
        }
    }
    // Only a symbolic link can resolve elsewhere: the walk above went through real paths.
    roots.retain(|root| {
        let is_link = std::fs::symlink_metadata(root).is_ok_and(|m| m.file_type().is_symlink());
        let real = if is_link {
            match std::fs::canonicalize(root) {
                Ok(real) => real,
                Err(_) => return false,
            }
        } else {
            root.clone()
        };
        !hidden
            .iter()
            .any(|secret| real.starts_with(secret) || secret.starts_with(&real))
    });
    roots.sort();
    roots
}

/// Directories to grant read so that `binary` (a path, or a name on `path_var`) runs when it is
/// installed under a hidden directory: the directory it is found in, the directory its symbolic
/// links resolve to, and for a `node_modules` package the package's directory. A `shims`
/// directory (pyenv, rbenv) grants its parent, the tool's prefix, which the shims run from.
pub fn install_dirs(binary: &str, path_var: Option<&str>) -> Vec<PathBuf> {
    let found = if binary.contains('/') {
        Some(PathBuf::from(binary))
    } else {
        path_var.and_then(|path| {
            std::env::split_paths(path)
                .map(|dir| dir.join(binary))
                .find(|candidate| candidate.is_file())
        })
    };
    let Some(found) = found else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    for file in [Some(found.clone()), std::fs::canonicalize(&found).ok()]
        .into_iter()
        .flatten()
    {
        let Some(dir) = file.parent() else { continue };
        if dir.file_name().is_some_and(|name| name == "shims") {
            dirs.extend(dir.parent().map(Path::to_path_buf));
        }
        let package = file
            .ancestors()
            .find(|a| a.parent().is_some_and(|p| p.ends_with("node_modules")))
            .or_else(|| {
                file.ancestors().find(|a| {
                    a.parent()
                        .and_then(Path::parent)
                        .is_some_and(|p| p.ends_with("node_modules"))
                        && a.parent()
                            .and_then(Path::file_name)
                            .is_some_and(|n| n.to_string_lossy().starts_with('@'))
                })
            });
        dirs.extend(package.map(Path::to_path_buf));
        dirs.push(dir.to_path_buf());
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_roots_leave_out_the_hidden_path_and_keep_its_siblings() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        for sub in ["home/secret/inner", "home/other", "open"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        std::os::unix::fs::symlink(base.join("home/secret"), base.join("open/link")).unwrap();
        let roots = readable_roots(&[base.join("home/secret")]);
        assert!(roots.contains(&base.join("home/other")), "{roots:?}");
        assert!(roots.contains(&PathBuf::from("/usr")), "{roots:?}");
        assert!(
            !roots
                .iter()
                .any(|r| r.starts_with(base.join("home/secret"))),
            "{roots:?}"
        );
        // `open` holds a link into the secret: it is carved out by its real path only, so the
        // link itself is not a root, and `open` (whose real path is not inside) stays.
        assert!(roots.contains(&base.join("open")), "{roots:?}");
        assert!(!roots.iter().any(|r| r == Path::new("/")), "{roots:?}");
    }

    #[test]
    fn a_link_to_the_hidden_path_is_not_a_readable_root() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(base.join("secret")).unwrap();
        std::os::unix::fs::symlink(base.join("secret"), base.join("alias")).unwrap();
        let roots = readable_roots(&[base.join("secret")]);
        assert!(!roots.contains(&base.join("alias")), "{roots:?}");
    }

    #[test]
    fn install_dirs_of_a_node_package_name_the_package_and_the_bin_dir() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let package = base.join("lib/node_modules/@scope/tool");
        std::fs::create_dir_all(&package).unwrap();
        std::fs::create_dir_all(base.join("bin")).unwrap();
        std::fs::write(package.join("cli.js"), "").unwrap();
        std::os::unix::fs::symlink(package.join("cli.js"), base.join("bin/tool")).unwrap();
        let dirs = install_dirs("tool", base.join("bin").to_str());
        assert!(dirs.contains(&package), "{dirs:?}");
        assert!(dirs.contains(&base.join("bin")), "{dirs:?}");
    }
}
