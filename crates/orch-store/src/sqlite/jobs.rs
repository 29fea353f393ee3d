//! Cron jobs and their firings: a firing row and the tasks it submits in one transaction.

use orch_core::cron::FiringKind;
use orch_core::{ProjectId, TaskId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{immediate, OwnedOp, Result, SqliteStore};
use crate::jobs::{self, Firing, Job, JobTarget, NewJob};
use crate::{Op, Submission};

impl SqliteStore {
    pub(crate) async fn add_job(&self, job: &NewJob, now: Timestamp) -> crate::Result<Job> {
        let mut job = job.clone();
        job.target.redact(&self.secrets.get());
        let source = job.target.source()?;
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let id: Option<i64> = tx
                .prepare_cached(sql!("insert_job"))?
                .query_row(
                    params![
                        job.name,
                        job.project.0,
                        job.schedule,
                        job.timezone,
                        job.missed.as_str(),
                        job.target.kind(),
                        source,
                        now.0,
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            if id.is_none() {
                return Err(jobs::name_taken(&job.name).into());
            }
            let stored = job_by_name(&tx, &job.name)?;
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    pub(crate) async fn jobs(&self) -> crate::Result<Vec<Job>> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(sql!("select_jobs"))?;
            let rows = stmt.query_map([], raw_job)?;
            let mut jobs = Vec::new();
            for row in rows {
                jobs.push(row?.into_job()?);
            }
            Ok(jobs)
        })
        .await
    }

    pub(crate) async fn job(&self, name: &str) -> crate::Result<Job> {
        let name = name.to_owned();
        self.call(move |conn| job_by_name(conn, &name)).await
    }

    pub(crate) async fn remove_job(&self, name: &str) -> crate::Result<Job> {
        let name = name.to_owned();
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let job = job_by_name(&tx, &name)?;
            tx.prepare_cached(sql!("delete_job"))?.execute([&name])?;
            tx.commit()?;
            Ok(job)
        })
        .await
    }

    pub(crate) async fn set_job_enabled(
        &self,
        name: &str,
        enabled: bool,
        now: Timestamp,
    ) -> crate::Result<Job> {
        let name = name.to_owned();
        self.call(move |conn| {
            let tx = immediate(conn)?;
            let changed = tx
                .prepare_cached(sql!("set_job_enabled"))?
                .execute(params![name, enabled, now.0])?;
            if changed == 0 {
                return Err(jobs::no_such_job(&name).into());
            }
            let job = job_by_name(&tx, &name)?;
            tx.commit()?;
            Ok(job)
        })
        .await
    }

    pub(crate) async fn advance_job(&self, job: i64, up_to: Timestamp) -> crate::Result<()> {
        self.call(move |conn| {
            conn.prepare_cached(sql!("advance_job"))?
                .execute(params![job, up_to.0])?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn fire_job(
        &self,
        job: i64,
        slot: Timestamp,
        kind: FiringKind,
        submission: std::result::Result<&Submission, &str>,
        op: Op<'_>,
    ) -> crate::Result<Option<Firing>> {
        let submission = match submission {
            Ok(submission) => Ok(self.secrets.prepared(submission)?),
            Err(error) => Err(error.to_owned()),
        };
        let op = OwnedOp::from(op);
        let result = self
            .call(move |conn| {
                // The write lock is taken first: a second scheduler firing the same slot waits
                // here, then finds the firing row and submits nothing.
                let tx = immediate(conn)?;
                let exists: bool = tx
                    .prepare_cached(sql!("select_job_exists"))?
                    .query_row([job], |r| r.get(0))?;
                if !exists {
                    return Err(jobs::no_such_job(&format!("#{job}")).into());
                }
                let error = submission.as_ref().err().cloned();
                let inserted = tx
                    .prepare_cached(sql!("insert_job_firing"))?
                    .execute(params![job, slot.0, kind.as_str(), error, op.now.0])?;
                if inserted == 0 {
                    return Ok(None);
                }
                let mut task = None;
                if let Ok(submission) = &submission {
                    let ids = super::submit::submit(&tx, submission, &op)?;
                    task = ids.0.first().copied();
                    if let Some(first) = task {
                        tx.prepare_cached(sql!("set_firing_task"))?
                            .execute(params![job, slot.0, first.0])?;
                    }
                }
                if kind != FiringKind::Manual {
                    tx.prepare_cached(sql!("advance_job"))?
                        .execute(params![job, slot.0])?;
                }
                tx.commit()?;
                Ok(Some(Firing {
                    job,
                    slot,
                    kind,
                    task,
                    error,
                    fired_at: op.now,
                }))
            })
            .await;
        self.woke(result)
    }

    pub(crate) async fn job_firings(&self, job: i64, limit: u32) -> crate::Result<Vec<Firing>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(sql!("select_job_firings"))?;
            let rows = stmt.query_map(params![job, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?;
            let mut firings = Vec::new();
            for row in rows {
                let (job, slot, kind, task, error, fired_at) = row?;
                firings.push(Firing {
                    job,
                    slot: Timestamp(slot),
                    kind: jobs::kind_from_stored(&kind)?,
                    task: task.map(TaskId),
                    error,
                    fired_at: Timestamp(fired_at),
                });
            }
            Ok(firings)
        })
        .await
    }
}

/// A job's columns before their text is parsed.
struct RawJob {
    id: i64,
    name: String,
    project: i64,
    project_path: String,
    schedule: String,
    timezone: String,
    missed: String,
    target: String,
    source: String,
    enabled: bool,
    last_slot: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

fn raw_job(r: &Row<'_>) -> rusqlite::Result<RawJob> {
    Ok(RawJob {
        id: r.get(0)?,
        name: r.get(1)?,
        project: r.get(2)?,
        project_path: r.get(3)?,
        schedule: r.get(4)?,
        timezone: r.get(5)?,
        missed: r.get(6)?,
        target: r.get(7)?,
        source: r.get(8)?,
        enabled: r.get(9)?,
        last_slot: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

impl RawJob {
    fn into_job(self) -> crate::Result<Job> {
        Ok(Job {
            target: JobTarget::from_stored(&self.target, &self.source, &self.name)?,
            missed: jobs::missed_from_stored(&self.missed)?,
            id: self.id,
            name: self.name,
            project: ProjectId(self.project),
            project_path: self.project_path,
            schedule: self.schedule,
            timezone: self.timezone,
            enabled: self.enabled,
            last_slot: self.last_slot.map(Timestamp),
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
        })
    }
}

fn job_by_name(conn: &Connection, name: &str) -> Result<Job> {
    let raw = conn
        .prepare_cached(sql!("select_job_by_name"))?
        .query_row([name], raw_job)
        .optional()?
        .ok_or_else(|| jobs::no_such_job(name))?;
    Ok(raw.into_job()?)
}
