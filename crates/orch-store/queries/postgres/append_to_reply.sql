UPDATE task_replies SET message = message || E'\n\n' || $2 WHERE id = $1
