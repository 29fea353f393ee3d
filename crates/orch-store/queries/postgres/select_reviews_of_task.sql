SELECT run_id, round, verdict, reasons, escalated FROM reviews WHERE task_id = $1 ORDER BY run_id
