SELECT repo, issue_number, pr_number, pr_url, head_branch, pushed_commit, marker_comment_id
FROM task_forge_links WHERE task_id = ?1
