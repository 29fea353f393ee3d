-- What a claim's worker needs besides the task (`claim_rest`), for claimed task $1: its
-- dependencies (in id order), its pending reply and its reviews (oldest run first), as
-- parallel arrays, NULL when none. Read right after the claim, only when the task has
-- dependencies or ran before.
SELECT array_to_string(deps.ids, ',') AS needs,
       deps.ids AS dep_ids, deps.projects AS dep_projects, deps.created AS dep_created,
       deps.statuses AS dep_statuses,
       reply.id AS reply_id, reply.message AS reply_message, reply.agent AS reply_agent,
       reply.step AS reply_step, reply.session_id AS reply_session,
       rv.runs AS review_runs, rv.rounds AS review_rounds, rv.verdicts AS review_verdicts,
       rv.reasons AS review_reasons, rv.escalated AS review_escalated
FROM (SELECT $1::BIGINT AS id) c
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
