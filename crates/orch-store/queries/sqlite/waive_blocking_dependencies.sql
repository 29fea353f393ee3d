UPDATE task_deps SET waived = 1
WHERE task_id = ?1 AND waived = 0
  AND dep_id IN (SELECT id FROM tasks
                 WHERE status IN ('failed', 'cancelled', 'needs_review', 'blocked'))
RETURNING dep_id
