-- The claim after `next` (the task to take): $1 now, $2 owner, $3 lease expiry, $4 the
-- token's hash, $5 actor, $6 the token's fingerprint. What else the worker needs (pending
-- reply, dependencies, reviews: `claim_extras`) is read only when the task can have it: it has
-- dependencies (`has_deps`), or ran before (a reply or a review needs an earlier run).
, claimed AS (
    UPDATE tasks
    SET status = 'running', attempts_used = attempts_used + 1, run_count = run_count + 1,
        status_reason = NULL, not_before = NULL, updated_at = $1
    FROM next WHERE tasks.id = next.id AND tasks.status = 'queued'
    RETURNING tasks.id, tasks.project_id, tasks.workflow_id, tasks.parent_id, tasks.spec,
              tasks.status, tasks.status_reason, tasks.attempts_used, tasks.run_count,
              tasks.not_before, tasks.created_at, tasks.updated_at
), run AS (
    INSERT INTO runs (task_id, attempt, owner, lease_expires_at, state, started_at, token_sha256)
    SELECT id, run_count, $2, $3, 'active', $1, $4 FROM claimed
    RETURNING id, task_id, attempt
), logged AS (
    INSERT INTO events (task_id, run_id, at, actor, kind, from_status, to_status, reason, data)
    SELECT task_id, id, $1, $5, 'claim', 'queued', 'running', NULL,
           jsonb_build_object('owner', $2::TEXT, 'attempt', attempt, 'token', $6::TEXT)::TEXT
    FROM run
)
SELECT c.id, c.project_id, c.workflow_id, c.parent_id, c.spec, c.status, c.status_reason,
       c.attempts_used, c.run_count, c.not_before, c.created_at, c.updated_at,
       run.id AS current_run, run.attempt, NULL::TEXT AS needs,
       EXISTS (SELECT 1 FROM task_deps d WHERE d.task_id = c.id) AS has_deps
FROM claimed c JOIN run ON run.task_id = c.id
