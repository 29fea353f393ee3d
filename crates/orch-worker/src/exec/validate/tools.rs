//! Tool tables: shells, destructive tools and wrappers, and which of their options take a value.

/// Programs that run a string as a script when given `-c` (or `--command`).
pub(super) const SHELLS: &[&str] = &[
    "sh", "bash", "zsh", "dash", "ksh", "fish", "csh", "tcsh", "ash", "mksh", "yash", "rbash",
];

/// Shells refused outright: running them at all means running command strings.
pub(super) const STRING_SHELLS: &[&str] = &["pwsh", "powershell", "cmd"];

/// Tools that delete or overwrite what their path arguments name.
pub(super) const DESTRUCTIVE_TOOLS: &[&str] = &[
    "rm", "rmdir", "unlink", "dd", "shred", "truncate", "mv", "cp", "chmod", "chown", "chgrp",
    "find", "rsync", "git", "mke2fs", "mkswap", "wipefs",
];

/// Programs that `find -exec` may use to delete the files it finds.
pub(super) const FIND_DELETERS: &[&str] = &["rm", "rmdir", "unlink", "shred", "truncate", "mv"];

/// Inputs of `dd` that are fine although outside the workspace.
pub(super) const DD_SOURCES: &[&str] = &["/dev/zero", "/dev/null", "/dev/urandom", "/dev/random"];

/// Most wrappers looked through in one command (`sudo env nice timeout ...`); more is refused.
pub(super) const MAX_WRAPPERS: usize = 16;

/// Which options of a tool take a value, for telling options from operands.
pub(super) struct OptionSpec {
    /// Short options that take a value (`-n 5` or `-n5`).
    pub(super) short_with_value: &'static str,
    /// Long options that take a value as the next word (`--signal KILL`); `--name=value` always
    /// works.
    pub(super) long_with_value: &'static [&'static str],
    /// `-10` is a value, not a cluster of options (`nice -10`).
    pub(super) numeric: bool,
}

impl OptionSpec {
    pub(super) const fn new(
        short_with_value: &'static str,
        long_with_value: &'static [&'static str],
    ) -> OptionSpec {
        OptionSpec {
            short_with_value,
            long_with_value,
            numeric: false,
        }
    }
}

pub(super) const NO_VALUES: OptionSpec = OptionSpec::new("", &[]);
pub(super) const ENV_OPTIONS: OptionSpec =
    OptionSpec::new("uCSP", &["unset", "chdir", "split-string"]);
pub(super) const NICE_OPTIONS: OptionSpec = OptionSpec {
    short_with_value: "n",
    long_with_value: &["adjustment"],
    numeric: true,
};
pub(super) const TIMEOUT_OPTIONS: OptionSpec = OptionSpec::new("sk", &["signal", "kill-after"]);
pub(super) const STDBUF_OPTIONS: OptionSpec = OptionSpec::new("ioe", &["input", "output", "error"]);
pub(super) const TIME_OPTIONS: OptionSpec = OptionSpec::new("fo", &["format", "output"]);
pub(super) const SUDO_OPTIONS: OptionSpec = OptionSpec::new(
    "CDgpRrTtUuc",
    &[
        "close-from",
        "chdir",
        "group",
        "prompt",
        "chroot",
        "role",
        "command-timeout",
        "type",
        "other-user",
        "user",
        "login-class",
    ],
);
pub(super) const DOAS_OPTIONS: OptionSpec = OptionSpec::new("uC", &[]);
pub(super) const XARGS_OPTIONS: OptionSpec = OptionSpec::new(
    "adEILnPs",
    &[
        "arg-file",
        "delimiter",
        "max-args",
        "max-procs",
        "max-chars",
        "process-slot-var",
    ],
);
pub(super) const SHRED_OPTIONS: OptionSpec =
    OptionSpec::new("ns", &["iterations", "size", "random-source"]);
pub(super) const TRUNCATE_OPTIONS: OptionSpec = OptionSpec::new("sr", &["size", "reference"]);
pub(super) const MOVE_OPTIONS: OptionSpec = OptionSpec::new("tS", &["target-directory", "suffix"]);
pub(super) const RSYNC_OPTIONS: OptionSpec = OptionSpec::new(
    "efTBM",
    &[
        "rsh",
        "rsync-path",
        "filter",
        "exclude",
        "include",
        "exclude-from",
        "include-from",
        "files-from",
        "temp-dir",
        "partial-dir",
        "backup-dir",
        "suffix",
        "compare-dest",
        "copy-dest",
        "link-dest",
        "log-file",
        "log-file-format",
        "out-format",
        "password-file",
        "chmod",
        "chown",
        "usermap",
        "groupmap",
        "max-size",
        "min-size",
        "max-delete",
        "max-alloc",
        "timeout",
        "contimeout",
        "port",
        "sockopts",
        "bwlimit",
        "protocol",
        "iconv",
        "checksum-choice",
        "compress-choice",
        "compress-level",
        "skip-compress",
        "info",
        "debug",
        "stop-after",
        "stop-at",
        "modify-window",
        "block-size",
        "outbuf",
        "read-batch",
        "write-batch",
        "only-write-batch",
        "address",
        "remote-option",
    ],
);
