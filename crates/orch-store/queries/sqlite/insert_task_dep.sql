INSERT OR IGNORE INTO task_deps (task_id, dep_id) VALUES (?1, ?2)
