//! Cron jobs (`orch job`): adding, listing, enabling and removing them, and firing a slot
//! exactly once however many schedulers try, with the submitted tasks in the same transaction.

#![allow(clippy::unwrap_used)]

mod support;

use orch_core::cron::{FiringKind, MissedPolicy};
use orch_core::{Status, Timestamp};
use orch_store::jobs::{JobTarget, NewJob};
use orch_store::{Submission, TaskFilter};
use support::store_tests;
use support::*;

fn new_job(db: &TestDb, name: &str) -> NewJob {
    NewJob {
        name: name.into(),
        project: db.project,
        schedule: "*/5 * * * *".into(),
        timezone: "UTC".into(),
        missed: MissedPolicy::Skip,
        target: JobTarget::Task(Box::new(task("cron", &[]).spec)),
    }
}

fn one_task(db: &TestDb) -> Submission {
    Submission {
        project: db.project,
        workflow: None,
        tasks: vec![task("cron", &[])],
    }
}

async fn jobs_are_added_listed_disabled_enabled_and_removed(db: TestDb) {
    let s = &db.store;
    let added = s
        .add_job(&new_job(&db, "every-five"), Timestamp(10))
        .await
        .unwrap();
    assert!(added.enabled);
    assert_eq!(added.last_slot, None);
    assert_eq!(added.schedule, "*/5 * * * *");
    assert_eq!(added.project_path, db.dir.path().to_string_lossy());
    assert_eq!(added.target, new_job(&db, "x").target);
    // The name is unique, and the refusal says what to do.
    let taken = s
        .add_job(&new_job(&db, "every-five"), Timestamp(11))
        .await
        .unwrap_err();
    assert!(taken.to_string().contains("orch job remove"), "{taken}");
    s.add_job(&new_job(&db, "another"), Timestamp(12))
        .await
        .unwrap();
    let names: Vec<String> = s
        .jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.name)
        .collect();
    assert_eq!(names, ["another", "every-five"]);

    let disabled = s
        .set_job_enabled("every-five", false, Timestamp(20))
        .await
        .unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.last_slot, None);
    // Enabling counts the time it was disabled as decided: those slots were not missed.
    let enabled = s
        .set_job_enabled("every-five", true, Timestamp(30))
        .await
        .unwrap();
    assert!(enabled.enabled);
    assert_eq!(enabled.last_slot, Some(Timestamp(30)));

    let removed = s.remove_job("every-five").await.unwrap();
    assert_eq!(removed.id, added.id);
    let gone = s.job("every-five").await.unwrap_err();
    assert!(gone.to_string().contains("orch job list"), "{gone}");
    assert!(s.remove_job("every-five").await.is_err());
    assert!(s.set_job_enabled("nope", true, Timestamp(1)).await.is_err());
}

async fn a_slot_fires_once_with_its_task_in_the_same_transaction(db: TestDb) {
    let s = &db.store;
    let job = s.add_job(&new_job(&db, "j"), Timestamp(0)).await.unwrap();
    let slot = Timestamp(300_000);
    let first = s
        .fire_job(
            job.id,
            slot,
            FiringKind::Scheduled,
            Ok(&one_task(&db)),
            op("a", 300_001),
        )
        .await
        .unwrap()
        .expect("the first firing of a slot submits");
    let task = first.task.expect("a task was submitted");
    assert_eq!(s.task(task).await.unwrap().status, Status::Queued);
    // A second scheduler (another handle, as another server) firing the same slot gets nothing
    // and submits nothing, whatever kind it believes the slot is.
    let other = db.reopen().await;
    for kind in [FiringKind::Scheduled, FiringKind::CatchUp] {
        let again = other
            .fire_job(job.id, slot, kind, Ok(&one_task(&db)), op("b", 300_002))
            .await
            .unwrap();
        assert_eq!(again, None);
    }
    assert_eq!(s.tasks(&TaskFilter::default()).await.unwrap().len(), 1);
    assert_eq!(s.job("j").await.unwrap().last_slot, Some(slot));
    let firings = s.job_firings(job.id, 10).await.unwrap();
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].task, Some(task));
    assert_eq!(firings[0].kind, FiringKind::Scheduled);
}

async fn many_schedulers_racing_on_one_slot_submit_one_task(db: TestDb) {
    let job = db
        .store
        .add_job(&new_job(&db, "race"), Timestamp(0))
        .await
        .unwrap();
    let mut handles = Vec::new();
    for n in 0..6 {
        let store = db.reopen().await;
        let submission = one_task(&db);
        handles.push(tokio::spawn(async move {
            let actor = format!("scheduler-{n}");
            store
                .fire_job(
                    job.id,
                    Timestamp(600_000),
                    FiringKind::Scheduled,
                    Ok(&submission),
                    op(&actor, 600_000 + n),
                )
                .await
                .unwrap()
                .is_some()
        }));
    }
    let mut fired = 0;
    for handle in handles {
        fired += usize::from(handle.await.unwrap());
    }
    assert_eq!(fired, 1);
    assert_eq!(
        db.store.tasks(&TaskFilter::default()).await.unwrap().len(),
        1
    );
}

async fn a_refused_submission_is_recorded_and_the_slot_counts_as_decided(db: TestDb) {
    let s = &db.store;
    let job = s
        .add_job(&new_job(&db, "broken"), Timestamp(0))
        .await
        .unwrap();
    let firing = s
        .fire_job(
            job.id,
            Timestamp(300_000),
            FiringKind::CatchUp,
            Err("agent `nope` is unknown"),
            op("a", 400_000),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(firing.task, None);
    assert_eq!(firing.error.as_deref(), Some("agent `nope` is unknown"));
    assert_eq!(
        s.job("broken").await.unwrap().last_slot,
        Some(Timestamp(300_000))
    );
    assert!(s.tasks(&TaskFilter::default()).await.unwrap().is_empty());
    // A manual firing does not move the decided slots; skipping moves them, never back.
    s.fire_job(
        job.id,
        Timestamp(500_000),
        FiringKind::Manual,
        Ok(&one_task(&db)),
        op("cli", 500_000),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        s.job("broken").await.unwrap().last_slot,
        Some(Timestamp(300_000))
    );
    s.advance_job(job.id, Timestamp(900_000)).await.unwrap();
    s.advance_job(job.id, Timestamp(600_000)).await.unwrap();
    assert_eq!(
        s.job("broken").await.unwrap().last_slot,
        Some(Timestamp(900_000))
    );
    let kinds: Vec<FiringKind> = s
        .job_firings(job.id, 10)
        .await
        .unwrap()
        .iter()
        .map(|f| f.kind)
        .collect();
    assert_eq!(kinds, [FiringKind::Manual, FiringKind::CatchUp]);
}

async fn a_secret_in_a_jobs_task_never_reaches_the_database(db: TestDb) {
    let secret = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    let mut job = new_job(&db, "leaky");
    if let JobTarget::Task(spec) = &mut job.target {
        spec.body = format!("use the token {secret}");
    }
    let stored = db.store.add_job(&job, Timestamp(0)).await.unwrap();
    let JobTarget::Task(spec) = &stored.target else {
        panic!("a task job")
    };
    assert!(!spec.body.contains(secret), "{}", spec.body);
    let mut workflow = new_job(&db, "leaky-flow");
    workflow.target = JobTarget::Workflow(format!("name: f\n# {secret}\ntasks: []\n"));
    db.store.add_job(&workflow, Timestamp(0)).await.unwrap();
    for (table, cell) in db.raw_cells().await {
        assert!(
            !cell.contains(secret),
            "table {table} holds the secret: {cell}"
        );
    }
}

store_tests!(
    jobs_are_added_listed_disabled_enabled_and_removed,
    a_slot_fires_once_with_its_task_in_the_same_transaction,
    many_schedulers_racing_on_one_slot_submit_one_task,
    a_refused_submission_is_recorded_and_the_slot_counts_as_decided,
    a_secret_in_a_jobs_task_never_reaches_the_database,
);
