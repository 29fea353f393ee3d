//! `orch debug claim-loop`: a minimal worker for tests and benchmarks. It claims, heartbeats
//! while "working", and completes, printing one JSON line per action so tests can check every
//! claim and refusal from outside the process.

use std::io::Write;
use std::time::Duration;

use orch_core::Outcome;
use orch_store::StoreError;
use serde_json::json;

use crate::cli::ClaimLoopArgs;
use crate::commands::{op, open_store};
use crate::config::Settings;
use crate::UserError;

fn emit(line: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    // A test reading these lines may have gone; there is nobody left to tell.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub async fn claim_loop(settings: &Settings, args: ClaimLoopArgs) -> anyhow::Result<()> {
    let outcome = match args.outcome.as_str() {
        "succeeded" => Outcome::Succeeded,
        "failed" => Outcome::Failed,
        "needs_review" => Outcome::NeedsReview,
        other => {
            return Err(UserError::new(format!(
                "--outcome {other}: use succeeded, failed or needs_review"
            ))
            .into())
        }
    };
    let store = open_store(settings).await?;
    let lease = Duration::from_millis(args.lease_ms);
    let mut claims = 0u64;
    let mut idle = 0u32;
    loop {
        if args.max.is_some_and(|max| claims >= max) {
            break;
        }
        let Some(claim) = store
            .claim_next(&args.owner, lease, op(&args.owner))
            .await?
        else {
            store.tick(op(&args.owner)).await?;
            idle += 1;
            if idle >= args.idle_polls {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        idle = 0;
        claims += 1;
        let run = claim.run.id;
        let token = claim.token;
        emit(
            json!({ "event": "claimed", "task": claim.task.id.0, "run": run.0, "token": orch_store::token_fingerprint(&token), "attempt": claim.run.attempt, "at": op("").now.0 }),
        );
        let mut lost = false;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(args.hold_ms);
        while tokio::time::Instant::now() < deadline {
            let left = deadline - tokio::time::Instant::now();
            tokio::time::sleep(left.min(Duration::from_millis(args.heartbeat_ms.max(1)))).await;
            match store.heartbeat(run, token, lease, op(&args.owner)).await {
                Ok(_) => {}
                Err(
                    StoreError::StaleLease { reason, .. }
                    | StoreError::NotLeaseHolder { reason, .. },
                ) => {
                    emit(
                        json!({ "event": "heartbeat_refused", "task": claim.task.id.0, "run": run.0, "reason": reason }),
                    );
                    lost = true;
                    break;
                }
                Err(other) => return Err(other.into()),
            }
        }
        if lost && !args.complete_after_lost_lease {
            continue;
        }
        match store
            .complete(run, token, outcome, None, op(&args.owner))
            .await
        {
            Ok(status) => emit(
                json!({ "event": "completed", "task": claim.task.id.0, "run": run.0, "status": status.as_str(), "at": op("").now.0 }),
            ),
            Err(
                StoreError::StaleLease { reason, .. } | StoreError::NotLeaseHolder { reason, .. },
            ) => {
                emit(
                    json!({ "event": "complete_refused", "task": claim.task.id.0, "run": run.0, "reason": reason }),
                );
            }
            Err(other) => return Err(other.into()),
        }
    }
    emit(json!({ "event": "exit", "claims": claims }));
    Ok(())
}
