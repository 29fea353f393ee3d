SELECT id FROM runs WHERE state = 'active' AND lease_expires_at < $1 ORDER BY lease_expires_at
