SELECT task_id, dep_id, waived FROM task_deps ORDER BY task_id, dep_id
