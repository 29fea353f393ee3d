INSERT INTO reviews (run_id, task_id, round, verdict, reasons, escalated, recorded_at)
SELECT $1, runs.task_id, $3, $4, $5, $6, $7
FROM runs WHERE runs.id = $1 AND runs.token_sha256 = $2 AND runs.owner = $8 AND runs.state = 'active'
ON CONFLICT (run_id) DO UPDATE SET
    round = excluded.round, verdict = excluded.verdict, reasons = excluded.reasons,
    escalated = excluded.escalated, recorded_at = excluded.recorded_at
