SELECT status, COUNT(*) AS n FROM tasks GROUP BY status
