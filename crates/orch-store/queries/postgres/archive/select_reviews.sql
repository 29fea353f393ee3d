SELECT run_id, task_id, round, verdict, reasons, escalated, recorded_at FROM reviews ORDER BY run_id
