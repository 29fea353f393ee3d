INSERT INTO reviews (run_id, task_id, round, verdict, reasons, escalated, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
