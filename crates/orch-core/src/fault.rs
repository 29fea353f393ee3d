//! Faults of the machine rather than of a task: a full disk, an I/O error, a database that does
//! not answer. They are nobody's mistake in the task, so they never spend a task's attempts: a
//! run that failed because of one is given back to the queue with a reason naming the cause, an
//! API request is answered 507 or 503 with the cause, and an outcome that cannot be recorded is
//! kept and delivered once the machine recovers.
//!
//! Classified from the words of the error (every layer's errors end up as text: the database
//! driver's, the OS's `os error N`, a remote daemon's answer), so one rule serves every backend
//! and front end.

use std::time::Duration;

/// What is wrong with the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineFault {
    /// No space left on a disk (or a quota reached): ENOSPC, EDQUOT, SQLite's "database or disk
    /// is full", PostgreSQL's "could not extend file".
    DiskFull,
    /// The disk failed a read or a write: EIO, SQLite's "disk I/O error".
    Io,
    /// The database does not answer (closed connection, server down).
    StoreUnavailable,
}

impl MachineFault {
    /// The fault an error message describes, if it is one of the machine's.
    pub fn classify(message: &str) -> Option<MachineFault> {
        let text = message.to_ascii_lowercase();
        let any = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
        if any(&[
            "no space left on device",
            "database or disk is full",
            "disk quota exceeded",
            "os error 28)",
            "os error 122)",
            "could not extend file",
            "insufficient storage",
        ]) {
            Some(MachineFault::DiskFull)
        } else if any(&["input/output error", "disk i/o error", "os error 5)"]) {
            Some(MachineFault::Io)
        } else if any(&[
            "the database is unavailable",
            "database connection is closed",
        ]) {
            Some(MachineFault::StoreUnavailable)
        } else {
            None
        }
    }

    /// The fault of an I/O error, if it is one of the machine's.
    pub fn of_io(error: &std::io::Error) -> Option<MachineFault> {
        match error.raw_os_error() {
            Some(28 | 122) => Some(MachineFault::DiskFull),
            Some(5) => Some(MachineFault::Io),
            _ => MachineFault::classify(&error.to_string()),
        }
    }

    /// The cause in words, for reasons and API answers.
    pub fn describe(self) -> &'static str {
        match self {
            MachineFault::DiskFull => "the disk is full",
            MachineFault::Io => "the disk failed a read or write",
            MachineFault::StoreUnavailable => "the database is unavailable",
        }
    }

    /// What to do about it, for messages.
    pub fn remedy(self) -> &'static str {
        match self {
            MachineFault::DiskFull => "free space on the server's disk; nothing is lost meanwhile",
            MachineFault::Io => "check the server's disk; nothing is lost meanwhile",
            MachineFault::StoreUnavailable => "check that the database is running and reachable",
        }
    }

    /// How long a run given back because of this fault waits before it is claimed again.
    pub fn requeue_delay(self) -> Duration {
        Duration::from_secs(10)
    }

    /// The reason recorded when a run that failed with `reason` because of this fault is given
    /// back without spending an attempt.
    pub fn requeue_reason(self, reason: &str) -> String {
        format!(
            "{} (a fault of the machine, not of the task; the attempt is not spent): {reason}",
            self.describe()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machines_faults_are_told_from_the_tasks() {
        let full = [
            "could not create the run bundle: No space left on device (os error 28)",
            "database error: database or disk is full",
            "write: Disk quota exceeded (os error 122)",
        ];
        for message in full {
            assert_eq!(
                MachineFault::classify(message),
                Some(MachineFault::DiskFull),
                "{message}"
            );
        }
        assert_eq!(
            MachineFault::classify("database error: disk I/O error"),
            Some(MachineFault::Io)
        );
        assert_eq!(
            MachineFault::classify(
                "the database is unavailable: the database connection is closed"
            ),
            Some(MachineFault::StoreUnavailable)
        );
        for task in [
            "step `build` exited with 1",
            "os error 2",
            "timed out after 5s",
        ] {
            assert_eq!(MachineFault::classify(task), None, "{task}");
        }
        assert_eq!(
            MachineFault::of_io(&std::io::Error::from_raw_os_error(28)),
            Some(MachineFault::DiskFull)
        );
        assert_eq!(
            MachineFault::of_io(&std::io::Error::from_raw_os_error(2)),
            None
        );
    }
}
