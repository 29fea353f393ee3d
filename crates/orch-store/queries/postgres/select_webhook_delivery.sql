SELECT task_id FROM webhook_deliveries WHERE source = $1 AND delivery_id = $2
