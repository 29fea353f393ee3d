SELECT token_hash, actor, created_at, expires_at FROM dashboard_sessions
WHERE token_hash = $1 AND expires_at > $2
