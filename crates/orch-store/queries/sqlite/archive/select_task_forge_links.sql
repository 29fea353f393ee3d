SELECT task_id, project_id, repo, issue_number, pr_number, pr_url, head_branch, pushed_commit,
    marker_comment_id, updated_at
FROM task_forge_links ORDER BY task_id
