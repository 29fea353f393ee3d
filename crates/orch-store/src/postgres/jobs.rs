//! Cron jobs and their firings: a firing row and the tasks it submits in one transaction. Two
//! servers firing one slot at once serialize on the firing's primary key: the second insert
//! waits for the first transaction, then changes nothing, and that server submits nothing.

use orch_core::cron::FiringKind;
use orch_core::{ProjectId, TaskId, Timestamp};
use tokio_postgres::Row;

use super::{PgStore, Result, Tx};
use crate::jobs::{self, Firing, Job, JobTarget, NewJob};
use crate::{Op, Submission};

impl PgStore {
    pub(crate) async fn add_job(&self, job: &NewJob, now: Timestamp) -> crate::Result<Job> {
        let mut job = job.clone();
        job.target.redact(&self.secrets.get());
        let source = job.target.source()?;
        transact!(self, |tx| async {
            let id = tx
                .query_opt(
                    sql!("insert_job"),
                    &[
                        &job.name,
                        &job.project.0,
                        &job.schedule,
                        &job.timezone,
                        &job.missed.as_str(),
                        &job.target.kind(),
                        &source,
                        &now.0,
                    ],
                )
                .await?;
            if id.is_none() {
                return Ok(Err(jobs::name_taken(&job.name)));
            }
            job_by_name(&tx, &job.name).await
        })
    }

    pub(crate) async fn jobs(&self) -> crate::Result<Vec<Job>> {
        read!(self, |tx| async {
            let mut jobs = Vec::new();
            for row in tx.query(sql!("select_jobs"), &[]).await? {
                match job_from_row(&row)? {
                    Ok(job) => jobs.push(job),
                    Err(e) => return Ok(Err(e)),
                }
            }
            Ok(Ok(jobs))
        })
    }

    pub(crate) async fn job(&self, name: &str) -> crate::Result<Job> {
        read!(self, |tx| async { job_by_name(&tx, name).await })
    }

    pub(crate) async fn remove_job(&self, name: &str) -> crate::Result<Job> {
        transact!(self, |tx| async {
            let job = match job_by_name(&tx, name).await? {
                Ok(job) => job,
                Err(e) => return Ok(Err(e)),
            };
            tx.execute(sql!("delete_job"), &[&name]).await?;
            Ok(Ok(job))
        })
    }

    pub(crate) async fn set_job_enabled(
        &self,
        name: &str,
        enabled: bool,
        now: Timestamp,
    ) -> crate::Result<Job> {
        transact!(self, |tx| async {
            let changed = tx
                .execute(sql!("set_job_enabled"), &[&name, &enabled, &now.0])
                .await?;
            if changed == 0 {
                return Ok(Err(jobs::no_such_job(name)));
            }
            job_by_name(&tx, name).await
        })
    }

    pub(crate) async fn advance_job(&self, job: i64, up_to: Timestamp) -> crate::Result<()> {
        transact!(self, |tx| async {
            tx.execute(sql!("advance_job"), &[&job, &up_to.0]).await?;
            Ok(Ok(()))
        })
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
        let error = submission.as_ref().err().cloned();
        transact!(self, |tx| async {
            let exists: bool = tx
                .query_one(sql!("select_job_exists"), &[&job])
                .await?
                .try_get(0)?;
            if !exists {
                return Ok(Err(jobs::no_such_job(&format!("#{job}"))));
            }
            let inserted = tx
                .execute(
                    sql!("insert_job_firing"),
                    &[&job, &slot.0, &kind.as_str(), &error, &op.now.0],
                )
                .await?;
            if inserted == 0 {
                return Ok(Ok(None));
            }
            let mut task = None;
            if let Ok(submission) = &submission {
                let ids = super::submit::submit(&tx, submission, &op).await?;
                task = ids.0.first().copied();
                if let Some(first) = task {
                    tx.execute(sql!("set_firing_task"), &[&job, &slot.0, &first.0])
                        .await?;
                }
            }
            if kind != FiringKind::Manual {
                tx.execute(sql!("advance_job"), &[&job, &slot.0]).await?;
            }
            Ok(Ok(Some(Firing {
                job,
                slot,
                kind,
                task,
                error: error.clone(),
                fired_at: op.now,
            })))
        })
    }

    pub(crate) async fn job_firings(&self, job: i64, limit: u32) -> crate::Result<Vec<Firing>> {
        read!(self, |tx| async {
            let mut firings = Vec::new();
            for r in tx
                .query(sql!("select_job_firings"), &[&job, &i64::from(limit)])
                .await?
            {
                let kind: String = r.try_get(2)?;
                let kind = match jobs::kind_from_stored(&kind) {
                    Ok(kind) => kind,
                    Err(e) => return Ok(Err(e)),
                };
                firings.push(Firing {
                    job: r.try_get(0)?,
                    slot: Timestamp(r.try_get(1)?),
                    kind,
                    task: r.try_get::<_, Option<i64>>(3)?.map(TaskId),
                    error: r.try_get(4)?,
                    fired_at: Timestamp(r.try_get(5)?),
                });
            }
            Ok(Ok(firings))
        })
    }
}

fn job_from_row(r: &Row) -> Result<crate::Result<Job>> {
    let name: String = r.try_get(1)?;
    let target: String = r.try_get(7)?;
    let source: String = r.try_get(8)?;
    let missed: String = r.try_get(6)?;
    let target = match JobTarget::from_stored(&target, &source, &name) {
        Ok(target) => target,
        Err(e) => return Ok(Err(e)),
    };
    let missed = match jobs::missed_from_stored(&missed) {
        Ok(missed) => missed,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(Job {
        id: r.try_get(0)?,
        name,
        project: ProjectId(r.try_get(2)?),
        project_path: r.try_get(3)?,
        schedule: r.try_get(4)?,
        timezone: r.try_get(5)?,
        missed,
        target,
        enabled: r.try_get(9)?,
        last_slot: r.try_get::<_, Option<i64>>(10)?.map(Timestamp),
        created_at: Timestamp(r.try_get(11)?),
        updated_at: Timestamp(r.try_get(12)?),
    }))
}

async fn job_by_name(tx: &Tx<'_>, name: &str) -> Result<crate::Result<Job>> {
    match tx.query_opt(sql!("select_job_by_name"), &[&name]).await? {
        Some(row) => job_from_row(&row),
        None => Ok(Err(jobs::no_such_job(name))),
    }
}
