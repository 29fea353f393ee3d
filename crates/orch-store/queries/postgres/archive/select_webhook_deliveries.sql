SELECT source, delivery_id, task_id, received_at FROM webhook_deliveries
ORDER BY source, delivery_id
