UPDATE task_replies SET message = message || char(10) || char(10) || ?2 WHERE id = ?1
