SELECT COALESCE(MAX(event_id), 0)::BIGINT FROM forge_outbox
