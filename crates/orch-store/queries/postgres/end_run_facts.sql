-- A run's end and its decision's input in one statement: end run $1 if the token (hash $2)
-- of owner $6 still holds its active lease (state $3, at $4, outcome $5), and lock its task's
-- facts until the transaction ends, as `select_task_facts` does. Returns nothing when refused.
-- No `current_run`: the run just ended was the task's only active one
-- (`runs_one_active_per_task`).
WITH ended AS (
    UPDATE runs SET state = $3, ended_at = $4, outcome = $5
    WHERE id = $1 AND token_sha256 = $2 AND owner = $6 AND state = 'active'
    RETURNING task_id
)
SELECT t.id, t.status, t.attempts_used, t.max_attempts, t.approved, t.spec
FROM tasks t JOIN ended ON t.id = ended.task_id
FOR UPDATE OF t
