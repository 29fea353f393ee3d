UPDATE task_replies SET answered_run = $2 WHERE task_id = $1 AND answered_run IS NULL
