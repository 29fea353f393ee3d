INSERT INTO webhook_deliveries (source, delivery_id, task_id, received_at) VALUES ($1, $2, $3, $4)
