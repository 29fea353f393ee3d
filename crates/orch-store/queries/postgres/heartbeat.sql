UPDATE runs SET lease_expires_at = $3
WHERE id = $1 AND token_sha256 = $2 AND owner = $4 AND state = 'active'
RETURNING lease_expires_at
