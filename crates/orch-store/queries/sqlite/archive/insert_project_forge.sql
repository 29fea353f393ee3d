INSERT INTO project_forges (project_id, kind, repo, linked_at) VALUES (?1, ?2, ?3, ?4)
