SELECT task_id, cause, reaction, round_kind, created_at
FROM forge_reactions ORDER BY task_id, cause
