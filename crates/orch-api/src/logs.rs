//! A run's logs searched (`GET /v1/runs/{task}/{attempt}/logs?format=json`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// The file, relative to the run directory (`logs.txt`, `steps/build/cmd-1.stdout.log`).
    pub file: String,
    /// The line's number in its file, from 1.
    pub line: usize,
    /// The line.
    pub text: String,
}

/// Matching lines of a run's logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogSearch {
    /// Matching lines in all, before `offset` and `limit`.
    pub total: usize,
    /// The lines skipped.
    pub offset: usize,
    /// The lines returned, at most `limit`.
    pub lines: Vec<LogLine>,
}

/// The data of a `log` event of a followed run (`follow=1`): new text of one of its files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogChunk {
    /// The file, relative to the run directory.
    pub file: String,
    /// The text appended to it.
    pub text: String,
}
