-- The job's slots up to ?2 are decided (fired or skipped); it never moves back.
UPDATE jobs SET last_slot = MAX(COALESCE(last_slot, ?2), ?2) WHERE id = ?1
