SELECT id, status, attempts_used, max_attempts, approved, spec FROM tasks WHERE id = ?1
