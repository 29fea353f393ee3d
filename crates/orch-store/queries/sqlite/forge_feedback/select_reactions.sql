SELECT cause, round_kind FROM forge_reactions WHERE task_id = ?1 ORDER BY cause
