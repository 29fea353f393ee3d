INSERT INTO jobs (name, project_id, schedule, timezone, missed, target, source, enabled, last_slot, created_at, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, NULL, ?8, ?8)
ON CONFLICT (name) DO NOTHING
RETURNING id
