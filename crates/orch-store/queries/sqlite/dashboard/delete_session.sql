DELETE FROM dashboard_sessions WHERE token_hash = ?1
