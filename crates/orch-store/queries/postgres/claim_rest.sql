-- The claim after `next` (the task to take): $1 now, $2 owner, $3 lease expiry, $4 the
-- token's hash, $5 actor, $6 the token's fingerprint. The reads at the end (pending reply,
-- dependencies, reviews) ride in the same statement, so a claim is one round trip.
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
       run.id AS current_run, run.attempt,
       array_to_string(deps.ids, ',') AS needs,
       deps.ids AS dep_ids, deps.projects AS dep_projects, deps.created AS dep_created,
       deps.statuses AS dep_statuses,
       reply.id AS reply_id, reply.message AS reply_message, reply.agent AS reply_agent,
       reply.step AS reply_step, reply.session_id AS reply_session,
       rv.runs AS review_runs, rv.rounds AS review_rounds, rv.verdicts AS review_verdicts,
       rv.reasons AS review_reasons, rv.escalated AS review_escalated
FROM claimed c JOIN run ON run.task_id = c.id
CROSS JOIN LATERAL (
    SELECT array_agg(t.id ORDER BY t.id) AS ids, array_agg(t.project_id ORDER BY t.id) AS projects,
           array_agg(t.created_at ORDER BY t.id) AS created,
           array_agg(t.status ORDER BY t.id) AS statuses
    FROM task_deps d JOIN tasks t ON t.id = d.dep_id WHERE d.task_id = c.id
) deps
LEFT JOIN LATERAL (
    SELECT id, message, agent, step, session_id FROM task_replies
    WHERE task_id = c.id AND answered_run IS NULL ORDER BY id LIMIT 1
) reply ON TRUE
CROSS JOIN LATERAL (
    SELECT array_agg(run_id ORDER BY run_id) AS runs, array_agg(round ORDER BY run_id) AS rounds,
           array_agg(verdict ORDER BY run_id) AS verdicts,
           array_agg(reasons ORDER BY run_id) AS reasons,
           array_agg(escalated ORDER BY run_id) AS escalated
    FROM reviews WHERE task_id = c.id
) rv
