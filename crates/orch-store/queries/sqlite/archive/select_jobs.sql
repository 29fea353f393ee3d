SELECT id, name, project_id, schedule, timezone, missed, target, source, enabled, last_slot,
    created_at, updated_at
FROM jobs ORDER BY id
