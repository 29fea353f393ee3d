SELECT version FROM orch_migrations
