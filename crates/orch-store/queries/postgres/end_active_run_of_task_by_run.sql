UPDATE runs SET state = $2, ended_at = $3, outcome = $4
WHERE id = $1 AND state = 'active'
RETURNING task_id
