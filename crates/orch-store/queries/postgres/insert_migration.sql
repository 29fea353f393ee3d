INSERT INTO orch_migrations (version, name, applied_at)
VALUES ($1, $2, (extract(epoch FROM now()) * 1000)::BIGINT)
