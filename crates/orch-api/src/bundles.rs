//! A remote worker's run bundle, sent to the daemon piece by piece and as a tar at the end.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Pieces of a run's bundle files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesRequest {
    /// The pieces, applied in order.
    pub files: Vec<FilePiece>,
}

/// Bytes of one bundle file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilePiece {
    /// The file, relative to the run directory (`logs.txt`, `steps/build/cmd-1.stdout.log`).
    pub path: String,
    /// Where `data` starts in the file. Bytes the daemon already has are skipped; a piece
    /// starting past the daemon's length is not applied (the answer says where to resume).
    #[serde(default)]
    pub offset: u64,
    /// Replace the whole file with `data` (`offset` must be 0).
    #[serde(default)]
    pub replace: bool,
    /// The bytes, base64 (standard alphabet, padded).
    pub data: String,
}

/// Each file's length on the daemon after the request: where the next append of it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileLengths {
    /// Path → length in bytes.
    pub files: BTreeMap<String, u64>,
}

/// The uploaded bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BundleStored {
    /// Files stored.
    pub files: u64,
    /// Bytes stored.
    pub bytes: u64,
}
