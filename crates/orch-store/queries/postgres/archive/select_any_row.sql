-- Whether any table an archive holds has a row (an import needs an empty database).
SELECT EXISTS (SELECT 1 FROM projects) OR EXISTS (SELECT 1 FROM workflows)
    OR EXISTS (SELECT 1 FROM tasks) OR EXISTS (SELECT 1 FROM task_deps)
    OR EXISTS (SELECT 1 FROM runs) OR EXISTS (SELECT 1 FROM events)
    OR EXISTS (SELECT 1 FROM agent_usage) OR EXISTS (SELECT 1 FROM task_replies)
    OR EXISTS (SELECT 1 FROM reviews) OR EXISTS (SELECT 1 FROM webhook_deliveries)
