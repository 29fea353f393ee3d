UPDATE runs SET refusal_recorded_at = $2, refusals_unrecorded = 0 WHERE id = $1
