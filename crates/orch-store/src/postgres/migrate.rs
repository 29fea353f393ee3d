//! Schema migrations for the PostgreSQL backend: every pending script in one transaction that
//! first takes a transaction-level advisory lock, so servers starting together apply each
//! migration once (the others wait, then find nothing to do), and a crash mid-migration leaves
//! the previous schema intact because PostgreSQL DDL is transactional.

use std::collections::BTreeSet;

use super::{Result, Tx};

/// Every migration, oldest first: (version, name, script). Never edit one that has landed.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        20261202170000,
        "create_core_tables",
        include_str!("../../migrations/postgres/20261202170000_create_core_tables.sql"),
    ),
    (
        20261203000000,
        "create_leases",
        include_str!("../../migrations/postgres/20261203000000_create_leases.sql"),
    ),
    (
        20261204100000,
        "forge",
        include_str!("../../migrations/postgres/20261204100000_forge.sql"),
    ),
    (
        20261204120000,
        "task_tree",
        include_str!("../../migrations/postgres/20261204120000_task_tree.sql"),
    ),
    (
        20261204130000,
        "info_requests",
        include_str!("../../migrations/postgres/20261204130000_info_requests.sql"),
    ),
    (
        20261204140000,
        "jobs",
        include_str!("../../migrations/postgres/20261204140000_jobs.sql"),
    ),
    (
        20261204150000,
        "dashboard",
        include_str!("../../migrations/postgres/20261204150000_dashboard.sql"),
    ),
    (
        20261205110000,
        "forge_feedback",
        include_str!("../../migrations/postgres/20261205110000_forge_feedback.sql"),
    ),
];

/// The advisory lock key of migrations ("orch" in ASCII).
const MIGRATION_LOCK: i64 = 0x6f72_6368;

/// Bring the schema up to date.
pub(super) async fn run(client: &mut deadpool_postgres::Object) -> Result<()> {
    let tx = Tx::begin(client).await?;
    tx.execute(sql!("lock_migrations"), &[&MIGRATION_LOCK])
        .await?;
    tx.batch(sql!("create_migrations_table")).await?;
    let applied: BTreeSet<i64> = tx
        .ids(sql!("select_migrations"), &[])
        .await?
        .into_iter()
        .collect();
    crate::rows::check_migrations(&applied, MIGRATIONS)?;
    for (version, name, script) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch(script).await?;
        tx.execute(sql!("insert_migration"), &[version, name])
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
