-- Lease the oldest due pending ops to one dispatcher (?1) until ?2 + ?3: at most ?4, and
-- per task only its oldest pending op, so one task's writes reach the forge in order. Ops the
-- same dispatcher holds are taken again (its name is stable: a restarted daemon takes back what
-- its killed predecessor held).
UPDATE forge_outbox SET lease_owner = ?1, lease_expires_at = ?2 + ?3, updated_at = ?2
WHERE id IN (
    SELECT o.id FROM forge_outbox o
    WHERE o.state = 'pending' AND o.next_attempt_at <= ?2
      AND (o.lease_expires_at IS NULL OR o.lease_expires_at <= ?2 OR o.lease_owner = ?1)
      AND NOT EXISTS (
          SELECT 1 FROM forge_outbox e
          WHERE e.task_id = o.task_id AND e.state = 'pending' AND e.id < o.id)
    ORDER BY o.id LIMIT ?4)
RETURNING id, idempotency_key, project_id, task_id, event_id, op, state, attempts, next_attempt_at,
    last_error, result, created_at, lease_owner
