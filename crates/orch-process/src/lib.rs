//! The one way orch starts a process: exec steps, agent CLIs, the tmux relay's child and (to
//! come) orch's own git all go through [`Spawn`].
//!
//! A [`Spawn`] names the program, its arguments, working directory and environment (always
//! cleared, then exactly what is given), its standard streams, whether it leads its own process
//! group, an optional registry directory where its group is recorded while it runs, and its
//! [`Sandbox`] (a closed enum: `Off` or `Enforced(SandboxPolicy)`). [`Running`] kills its whole
//! group when dropped. [`group`] holds stop-by-group and the sweeps a restarting daemon runs
//! ([`kill_orphaned_groups`], [`kill_processes_of_runs`]); [`sandbox`] the OS sandbox.
//!
//! Architecture invariant: this crate knows nothing of tasks, runs, stores or agents; callers
//! build the policy.

pub mod group;
pub mod sandbox;
mod spawn;

pub use group::{kill_orphaned_groups, kill_processes_of_runs, RUN_ID_VAR, SCRATCH_VAR};
pub use sandbox::{support, Limits, Sandbox, SandboxPolicy, Support};
pub use spawn::{Io, Running, Spawn, SpawnError};
