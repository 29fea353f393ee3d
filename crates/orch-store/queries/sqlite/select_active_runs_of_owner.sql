SELECT id FROM runs WHERE state = 'active' AND substr(owner, 1, length(?1)) = ?1 ORDER BY id
