SELECT task_id FROM runs WHERE state = 'active' AND ?1 = ?1 ORDER BY task_id
