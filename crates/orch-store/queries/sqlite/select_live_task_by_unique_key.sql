SELECT id FROM tasks
WHERE project_id = ?1 AND unique_key = ?2
  AND status NOT IN ('done', 'failed', 'needs_review', 'cancelled')
