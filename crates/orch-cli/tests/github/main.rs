//! GitHub end to end: the real `orch serve` against the fake GitHub (`orch-github-fake`) on
//! 127.0.0.1, with `sim` as the agent and a real bare repository as the remote.

#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

// The feedback loop of a task's pull request until it is merged (ghin).
mod feedback;
// Issues found by polling and delivered by webhook become one task each (ghin).
mod app_auth;
// The feedback scenario with the daemon SIGKILLed at random moments (ghchaos).
mod chaos;
// Conflicts, merges while not done, polled mentions, per-project labels (ghloop).
mod loop_end;
mod mentions;
mod mentions_poll;
mod outbound;
mod outbound_crash;
mod outbound_world;
mod plan;
mod polling;
mod publish;
mod rate_limits;
mod remote_plan;
mod trigger_label;
