-- A dispatcher (?1) still sending: its unexpired leases run until ?2 + ?3 (an expired one may
-- be another dispatcher's already, so it is not renewed).
UPDATE forge_outbox SET lease_expires_at = ?2 + ?3, updated_at = ?2
WHERE state = 'pending' AND lease_owner = ?1 AND lease_expires_at > ?2
