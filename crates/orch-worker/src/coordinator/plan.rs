//! A planner's children (issue 12's `plan` label): the tasks of a checked plan created as
//! children of the planning task, all in one transaction and once per parent (their delivery id
//! is the parent's, `orch_core::planner::children_delivery`), so a crash, a second run or a
//! repeated request never makes them twice. An embedded worker creates them in the store; a
//! remote worker sends the checked plan to the daemon (`POST /v1/worker/runs/{run}/plan`,
//! fenced by the run's token), which checks it again with its own configuration and creates
//! the children of the run's task, in its project, whatever the request says.

use std::time::Duration;

use orch_core::planner::TaskPlan;
use orch_core::{FencingToken, NewTask, ProjectId, RunId, TaskId};
use orch_store::{Delivery, Op, Submission};

use super::{Coordinator, CoordinatorError};

/// How often a remote worker sends its plan while the daemon cannot be reached (the request is
/// idempotent, so sending it again is safe).
const PLAN_ATTEMPTS: u32 = 6;

impl Coordinator {
    /// Create the children of `parent` (in `project`) for `plan` unless they were created
    /// before; their ids and whether they were created now. `children` is what the embedded
    /// worker creates; a remote worker sends `plan` and the daemon makes the children itself.
    pub async fn create_children(
        &self,
        worker: &str,
        (run, token, lease): (RunId, FencingToken, Duration),
        (project, parent): (ProjectId, TaskId),
        plan: &TaskPlan,
        children: Vec<NewTask>,
    ) -> Result<(Vec<TaskId>, bool), CoordinatorError> {
        match self {
            Coordinator::Local(store) => {
                let (source, id) = orch_core::planner::children_delivery(parent);
                // The run must still hold its lease: a stale run plans nothing.
                store
                    .heartbeat(run, token, lease, Op::now(worker))
                    .await
                    .map_err(CoordinatorError::from_store)?;
                let submitted = store
                    .submit_once(
                        &[Delivery::new(source, id)],
                        &Submission {
                            project,
                            workflow: None,
                            tasks: children,
                        },
                        Op::now(worker),
                    )
                    .await
                    .map_err(CoordinatorError::from_store)?;
                Ok((submitted.tasks, submitted.created))
            }
            Coordinator::Http(http) => {
                let body = serde_json::to_value(plan)
                    .map_err(|e| CoordinatorError::Refused(format!("encode the plan: {e}")))?;
                let mut attempt = 0;
                let response = loop {
                    attempt += 1;
                    match http
                        .post_about_run(worker, run, token, "plan", body.clone())
                        .await
                    {
                        Err(e) if e.is_retryable() && attempt < PLAN_ATTEMPTS => {
                            tracing::warn!(%run, "sending the plan again: {e}");
                            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                        }
                        other => break other?,
                    }
                };
                let planned: orch_api::PlannedChildren = response.json().await.map_err(|e| {
                    CoordinatorError::Refused(format!("read the answer to the plan: {e}"))
                })?;
                Ok((
                    planned.children.into_iter().map(TaskId).collect(),
                    planned.created,
                ))
            }
        }
    }
}
