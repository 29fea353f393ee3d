//! Schema migrations for the SQLite backend.
//!
//! A small runner of our own rather than a migration crate: it applies the pending scripts inside
//! one `BEGIN IMMEDIATE` transaction, so two `orch` processes opening a new home at the same time
//! serialize on SQLite's own write lock (no lock files), and a crash mid-migration leaves the
//! previous schema intact because SQLite DDL is transactional.

use std::collections::BTreeSet;

use rusqlite::{params, Connection, TransactionBehavior};

use super::Result;

/// Every migration, oldest first: (version, name, script). Never edit one that has landed.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        20261121000000,
        "create_core_tables",
        include_str!("../../migrations/sqlite/20261121000000_create_core_tables.sql"),
    ),
    (
        20261121120000,
        "create_webhook_deliveries",
        include_str!("../../migrations/sqlite/20261121120000_create_webhook_deliveries.sql"),
    ),
    (
        20261121200000,
        "agent_usage_and_replies",
        include_str!("../../migrations/sqlite/20261121200000_agent_usage_and_replies.sql"),
    ),
    (
        20261202120000,
        "add_run_token_hash",
        include_str!("../../migrations/sqlite/20261202120000_add_run_token_hash.sql"),
    ),
    (
        20261202160000,
        "create_reviews",
        include_str!("../../migrations/sqlite/20261202160000_create_reviews.sql"),
    ),
    (
        20261203000000,
        "create_leases",
        include_str!("../../migrations/sqlite/20261203000000_create_leases.sql"),
    ),
    (
        20261204100000,
        "forge",
        include_str!("../../migrations/sqlite/20261204100000_forge.sql"),
    ),
    (
        20261204120000,
        "task_tree",
        include_str!("../../migrations/sqlite/20261204120000_task_tree.sql"),
    ),
    (
        20261204130000,
        "info_requests",
        include_str!("../../migrations/sqlite/20261204130000_info_requests.sql"),
    ),
    (
        20261204140000,
        "jobs",
        include_str!("../../migrations/sqlite/20261204140000_jobs.sql"),
    ),
    (
        20261204150000,
        "dashboard",
        include_str!("../../migrations/sqlite/20261204150000_dashboard.sql"),
    ),
    (
        20261205110000,
        "forge_feedback",
        include_str!("../../migrations/sqlite/20261205110000_forge_feedback.sql"),
    ),
];

/// Bring the schema up to date.
pub(super) fn run(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS orch_migrations (
             version     INTEGER PRIMARY KEY,
             name        TEXT    NOT NULL,
             applied_at  INTEGER NOT NULL
         )",
    )?;
    let applied: BTreeSet<i64> = {
        let mut stmt = tx.prepare("SELECT version FROM orch_migrations")?;
        let versions = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        versions
    };
    crate::rows::check_migrations(&applied, MIGRATIONS)?;
    for (version, name, script) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.execute_batch(script)?;
        tx.execute(
            "INSERT INTO orch_migrations (version, name, applied_at) VALUES (?1, ?2, unixepoch() * 1000)",
            params![version, name],
        )?;
    }
    tx.commit()?;
    Ok(())
}
