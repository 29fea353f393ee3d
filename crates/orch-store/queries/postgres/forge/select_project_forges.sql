SELECT project_id, kind, repo, linked_at FROM project_forges ORDER BY project_id
