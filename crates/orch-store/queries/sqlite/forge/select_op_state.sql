SELECT state, lease_owner FROM forge_outbox WHERE id = ?1
