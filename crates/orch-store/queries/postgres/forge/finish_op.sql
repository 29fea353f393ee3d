-- Done, by the dispatcher holding the lease (zero rows: it does not).
UPDATE forge_outbox SET state = 'done', result = $3, last_error = NULL, lease_owner = NULL,
    lease_expires_at = NULL, updated_at = $4
WHERE id = $1 AND state = 'pending' AND lease_owner = $2 AND lease_expires_at > $4
RETURNING project_id, task_id, op
