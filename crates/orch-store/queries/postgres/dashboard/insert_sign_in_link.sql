INSERT INTO dashboard_sign_in_links (token_hash, actor, created_at, expires_at) VALUES ($1, $2, $3, $4)
