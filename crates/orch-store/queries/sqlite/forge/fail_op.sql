-- An attempt failed: pending again from ?4 (NULL: failed for good), by the lease holder only.
UPDATE forge_outbox SET attempts = attempts + 1, last_error = ?3,
    state = CASE WHEN ?4 IS NULL THEN 'failed' ELSE 'pending' END,
    next_attempt_at = COALESCE(?4, next_attempt_at),
    lease_owner = NULL, lease_expires_at = NULL, updated_at = ?5
WHERE id = ?1 AND state = 'pending' AND lease_owner = ?2 AND lease_expires_at > ?5
