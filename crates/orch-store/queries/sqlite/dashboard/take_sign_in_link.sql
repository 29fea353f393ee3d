DELETE FROM dashboard_sign_in_links WHERE token_hash = ?1 RETURNING actor, expires_at
