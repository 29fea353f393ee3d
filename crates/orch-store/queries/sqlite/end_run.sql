UPDATE runs SET state = ?3, ended_at = ?4, outcome = ?5
WHERE id = ?1 AND id = ?2 AND state = 'active'
RETURNING task_id
