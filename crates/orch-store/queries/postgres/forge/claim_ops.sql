-- Lease the oldest due pending ops to one dispatcher ($1) until $2 + $3: at most $4, and
-- per task only its oldest pending op, so one task's writes reach the forge in order. Ops the
-- same dispatcher holds are taken again (its name is stable: a restarted daemon takes back what
-- its killed predecessor held). SKIP
-- LOCKED: two dispatchers claiming at once take different rows. A CTE, so the limited
-- selection is evaluated once.
WITH due AS MATERIALIZED (
    SELECT o.id FROM forge_outbox o
    WHERE o.state = 'pending' AND o.next_attempt_at <= $2
      AND (o.lease_expires_at IS NULL OR o.lease_expires_at <= $2 OR o.lease_owner = $1)
      AND NOT EXISTS (
          SELECT 1 FROM forge_outbox e
          WHERE e.task_id = o.task_id AND e.state = 'pending' AND e.id < o.id)
    ORDER BY o.id LIMIT $4
    FOR UPDATE OF o SKIP LOCKED)
UPDATE forge_outbox f SET lease_owner = $1, lease_expires_at = $2 + $3, updated_at = $2
FROM due WHERE f.id = due.id
RETURNING f.id, f.idempotency_key, f.project_id, f.task_id, f.event_id, f.op, f.state,
    f.attempts, f.next_attempt_at, f.last_error, f.result, f.created_at, f.lease_owner
