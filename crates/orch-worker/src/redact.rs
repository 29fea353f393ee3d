//! The secret scanner lives in `orch-core` (pure logic the store and the daemon need too); it is
//! re-exported here so worker code and tests keep their paths.

pub use orch_core::redact::*;
