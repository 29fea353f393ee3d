-- An import fills an empty database: no other writer may add rows meanwhile.
LOCK TABLE projects, workflows, tasks, task_deps, runs, events, agent_usage, task_replies,
    reviews, webhook_deliveries IN EXCLUSIVE MODE
