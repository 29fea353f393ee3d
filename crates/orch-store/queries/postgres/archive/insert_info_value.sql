INSERT INTO info_values (request_id, task_id, key, secret, value)
VALUES ($1, $2, $3, $4, $5)
