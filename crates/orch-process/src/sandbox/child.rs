//! The part of the sandbox that runs in the forked child, between `fork` and `exec`: the one
//! place in orch that uses `unsafe`.

use std::io;
use std::os::fd::AsRawFd;

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::unshare;
use nix::sys::resource::setrlimit;
use nix::sys::stat::Mode;

use super::Prepared;

/// Make `command` apply `prepared` in its child before `exec`, in this order: resource limits;
/// new user (and network, mount) namespaces with the identity maps; the tmpfs masks;
/// `no_new_privs`; the Landlock ruleset.
#[allow(unsafe_code)]
pub(crate) fn install(command: &mut std::process::Command, prepared: Prepared) {
    use std::os::unix::process::CommandExt;
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
    // mount, prctl, landlock_restrict_self) on data prepared in the parent before the fork
    // (the C strings, the map texts, the limits, the ruleset fd): it allocates nothing, takes
    // no lock and touches no shared state. An error is an `io::Error` from an errno, which does
    // not allocate either; the standard library reports it to the parent as the spawn's error.
    unsafe {
        command.pre_exec(apply);
    }
}

/// Write `bytes` to an existing file in one `write` (what the `/proc/self/*_map` files need).
fn write_file(path: &std::ffi::CStr, bytes: &[u8]) -> io::Result<()> {
    let fd = open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    let written = nix::unistd::write(&fd, bytes)?;
    if written != bytes.len() {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(())
}
