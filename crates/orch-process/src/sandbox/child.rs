//! The part of the sandbox that runs in the forked child, between `fork` and `exec`: the one
//! place in orch that uses `unsafe`.

use std::ffi::CStr;
use std::io;
use std::os::fd::AsRawFd;

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::unshare;
use nix::sys::resource::setrlimit;
use nix::sys::stat::Mode;

use super::Prepared;

/// `struct mount_attr` of `mount_setattr(2)` (`<linux/mount.h>`, `MOUNT_ATTR_SIZE_VER0`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MountAttr {
    pub(crate) attr_set: u64,
    pub(crate) attr_clr: u64,
    pub(crate) propagation: u64,
    pub(crate) userns_fd: u64,
}

/// `MOUNT_ATTR_RDONLY` set on a mount tree.
pub(crate) const READ_ONLY: MountAttr = MountAttr {
    attr_set: libc::MOUNT_ATTR_RDONLY,
    attr_clr: 0,
    propagation: 0,
    userns_fd: 0,
};

/// `MOUNT_ATTR_RDONLY` cleared on a mount tree.
pub(crate) const WRITABLE: MountAttr = MountAttr {
    attr_set: 0,
    attr_clr: libc::MOUNT_ATTR_RDONLY,
    propagation: 0,
    userns_fd: 0,
};

/// Make `command` apply `prepared` in its child before `exec`, in this order: resource limits;
/// new user (and network, mount) namespaces with the identity maps; the read-only mount tree
/// with its writable binds; the tmpfs masks; the working directory again (on the new mounts);
/// the capability bounding set emptied; `no_new_privs`; the Landlock ruleset.
#[allow(unsafe_code)]
pub(crate) fn install(command: &mut std::process::Command, prepared: Prepared) {
    use std::os::unix::process::CommandExt;
    // Applies `attr` to the mount at `path` (and below it with `recursive`).
    let set_attr = |path: &CStr, attr: &MountAttr, recursive: bool| -> io::Result<()> {
        let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
        // SAFETY: `path` is a NUL-terminated string and `attr` a `struct mount_attr` of the
        // size passed, both alive for the call; the kernel only reads them.
        let done = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                path.as_ptr(),
                flags,
                std::ptr::from_ref(attr),
                std::mem::size_of::<MountAttr>(),
            )
        };
        if done != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    let apply = move || -> io::Result<()> {
        for (resource, value) in &prepared.rlimits {
            setrlimit(*resource, *value, *value)?;
        }
        if let Some(flags) = prepared.unshare {
            unshare(flags)?;
        }
        if let Some(maps) = &prepared.id_maps {
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/uid_map", &maps.uid_map)?;
            write_file(c"/proc/self/gid_map", &maps.gid_map)?;
        }
        if let Some(mounts) = &prepared.read_only_root {
            // Our own copy of the tree: nothing done below reaches the host's namespace.
            mount(
                None::<&CStr>,
                c"/",
                None::<&CStr>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&CStr>,
            )?;
            set_attr(c"/", &READ_ONLY, true)?;
            for path in &mounts.writable {
                mount(
                    Some(path.as_c_str()),
                    path.as_c_str(),
                    None::<&CStr>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&CStr>,
                )?;
                // A mount below `path` that the host made read-only is locked so in a user
                // namespace (EPERM): then only the bind itself is made writable.
                match set_attr(path.as_c_str(), &WRITABLE, true) {
                    Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
                        set_attr(path.as_c_str(), &WRITABLE, false)?;
                    }
                    other => other?,
                }
            }
        }
        for path in &prepared.masked {
            let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            mount(
                Some(c"none"),
                path.as_c_str(),
                Some(c"tmpfs"),
                flags,
                Some(c"size=4k"),
            )?;
        }
        if let Some(mounts) = &prepared.read_only_root {
            // The working directory was entered before this closure ran, on the mount that is
            // now read-only: enter it again by name to stand on the writable bind.
            if let Some(cwd) = &mounts.cwd {
                nix::unistd::chdir(cwd.as_c_str())?;
            }
            // A task that is uid 0 in its namespace would get every capability there at exec
            // and could clear the read-only flags again; with an empty bounding set (and no
            // inheritable or ambient capabilities, as orch never sets any) exec grants none.
            for cap in 0..=mounts.last_cap {
                // SAFETY: a prctl with integer arguments only.
                let done = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
                if done != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        nix::sys::prctl::set_no_new_privs()?;
        if let Some(ruleset) = &prepared.ruleset {
            // SAFETY: a raw syscall with an fd we own and no pointers.
            let done = unsafe {
                libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32)
            };
            if done != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // functions may be called. It only makes syscalls (setrlimit, unshare, open, write, close,
    // mount, mount_setattr, chdir, prctl, landlock_restrict_self) on data prepared in the parent
    // before the fork (the C strings, the map texts, the limits, the mount attributes, the
    // ruleset fd): it allocates nothing, takes no lock and touches no shared state. An error is
    // an `io::Error` from an errno, which does not allocate either; the standard library reports
    // it to the parent as the spawn's error.
    unsafe {
        command.pre_exec(apply);
    }
}

/// Write `bytes` to an existing file in one `write` (what the `/proc/self/*_map` files need).
fn write_file(path: &CStr, bytes: &[u8]) -> io::Result<()> {
    let fd = open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    let written = nix::unistd::write(&fd, bytes)?;
    if written != bytes.len() {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(())
}
