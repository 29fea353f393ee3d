UPDATE runs SET state = $3, ended_at = $4, outcome = $5
WHERE id = $1 AND token_sha256 = $2 AND owner = $6 AND state = 'active'
RETURNING task_id
