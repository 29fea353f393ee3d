-- Why a queued task was passed over by a gated claim (only while it is still queued).
UPDATE tasks SET status_reason = $2
WHERE id = $1 AND status = 'queued' AND status_reason IS DISTINCT FROM $2
