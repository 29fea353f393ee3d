-- A checked move and its event in one statement: task $1 from $2 to $3 (reason $4, not before
-- $5, at $6), logged as kind $8 of run $7 by actor $9. Returns the event's id; nothing when
-- the task was no longer `$2` (then nothing changed).
WITH moved AS (
    UPDATE tasks SET status = $3, status_reason = $4, not_before = $5, updated_at = $6
    WHERE id = $1 AND status = $2
    RETURNING id
)
INSERT INTO events (task_id, run_id, at, actor, kind, from_status, to_status, reason, data)
SELECT id, $7, $6, $9, $8, $2, $3, $4, '{}' FROM moved
RETURNING id
