//! The orch domain: tasks, steps, workflows, the lifecycle state machine, the DAG and retry
//! policy.
//!
//! Architecture invariant: this crate does no I/O and has no async runtime. Time and randomness
//! come in as arguments, so everything here is deterministic and tested without a database.

// Unit tests may unwrap (STYLE.md: "no `unwrap()` outside tests"); the workspace lint still
// holds for the library code itself.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod approval;
pub mod cron;
pub mod dag;
pub mod decide;
pub mod fault;
pub mod forge;
pub mod info_request;
pub mod input;
pub mod lifecycle;
pub mod limits;
pub mod model;
pub mod plan;
pub mod planner;
pub mod redact;
pub mod replay;
pub mod retry;
pub mod spec;
pub mod tools;
pub mod tree;

pub use input::{
    CancelReason, CommandDraft, FieldError, ReplyMessage, RetryDelay, StepDraft, TaskDraft,
};
pub use lifecycle::{EventKind, Status, TransitionError};
pub use model::*;
pub use retry::RetryPolicy;

/// Serde helpers that store a `Duration` as whole milliseconds.
pub(crate) mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            value: &Option<Duration>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(d) => super::serialize(d, serializer),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            Option::<u64>::deserialize(deserializer).map(|v| v.map(Duration::from_millis))
        }
    }
}
