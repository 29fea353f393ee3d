UPDATE runs SET lease_expires_at = ?3
WHERE id = ?1 AND id = ?2 AND state = 'active'
RETURNING lease_expires_at
