SELECT COALESCE(MAX(event_id), 0) FROM forge_outbox
