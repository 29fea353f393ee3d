-- A slot fires once: a second insert of (job, slot) waits for the first's transaction, then
-- changes nothing.
INSERT INTO job_firings (job_id, slot_at, kind, task_id, error, fired_at)
VALUES ($1, $2, $3, NULL, $4, $5)
ON CONFLICT (job_id, slot_at) DO NOTHING
