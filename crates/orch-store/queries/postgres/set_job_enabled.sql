-- Enabling moves the decided slots up to now: slots that passed while the job was disabled are
-- not missed ones.
UPDATE jobs SET enabled = $2, updated_at = $3,
    last_slot = CASE WHEN $2 AND NOT enabled THEN GREATEST(COALESCE(last_slot, $3), $3) ELSE last_slot END
WHERE name = $1
