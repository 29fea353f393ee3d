INSERT INTO jobs (id, name, project_id, schedule, timezone, missed, target, source, enabled,
    last_slot, created_at, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
