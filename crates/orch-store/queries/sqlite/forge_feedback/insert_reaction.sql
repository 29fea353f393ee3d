INSERT INTO forge_reactions (task_id, cause, reaction, round_kind, created_at)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (task_id, cause) DO NOTHING
