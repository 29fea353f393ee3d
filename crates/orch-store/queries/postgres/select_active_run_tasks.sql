SELECT task_id FROM runs WHERE state = 'active' ORDER BY task_id
