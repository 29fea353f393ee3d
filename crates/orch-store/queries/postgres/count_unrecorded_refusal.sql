UPDATE runs SET refusals_unrecorded = refusals_unrecorded + 1 WHERE id = $1
