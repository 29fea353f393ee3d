INSERT INTO task_forge_links (task_id, project_id, repo, issue_number, pr_number, pr_url,
    head_branch, pushed_commit, marker_comment_id, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
