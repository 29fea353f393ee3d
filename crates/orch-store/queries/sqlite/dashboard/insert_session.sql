INSERT INTO dashboard_sessions (token_hash, actor, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)
