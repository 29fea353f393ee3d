//! End-to-end tests: the real `orch` binary, run as separate OS processes on temporary homes,
//! checked through its JSON output and the SQLite database it writes.
//!
//! One test binary for all of them, so the binary is linked once; each module is one
//! acceptance scenario: the durable task core, and execution by `orch serve`.

#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod agents;
mod busy;
mod chaos;
mod cli;
mod client;
mod consistency;
mod contention;
mod crash;
mod demo;
mod doctor;
mod escape;
mod execution;
mod export;
mod fencing;
mod flow;
mod forge_flow;
mod governance_gaps;
mod governance_tree;
mod hosts;
mod info_requests;
mod jobs;
mod landing;
mod limits;
mod listing;
mod live;
mod machine;
mod operations;
mod real_agents;
mod regressions;
mod remote;
mod routing;
mod run_wait;
mod scale_out;
mod secrets;
mod serve;
mod submit_checks;
mod webhooks;
