UPDATE info_requests SET state = ?2, closed_at = ?3, closed_by = ?4
WHERE id = ?1 AND state = 'open'
