-- Give up the lease `name` if `holder` holds it (a clean stop hands leadership over at once).
DELETE FROM leases WHERE name = $1 AND holder = $2
