-- Link a project to its repository (a repeat replaces the link).
INSERT INTO project_forges (project_id, kind, repo, linked_at) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (project_id) DO UPDATE SET kind = excluded.kind, repo = excluded.repo,
    linked_at = excluded.linked_at
