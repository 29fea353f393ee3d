-- An import fills an empty database: no other writer may add rows meanwhile.
LOCK TABLE projects, workflows, tasks, task_deps, runs, events, agent_usage, task_replies,
    reviews, webhook_deliveries, info_requests, info_values, jobs, job_firings, project_forges,
    task_forge_links, forge_outbox, forge_reactions IN EXCLUSIVE MODE
