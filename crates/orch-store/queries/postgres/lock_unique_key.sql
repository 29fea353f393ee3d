-- Two submissions of one unique key (on two servers too) serialize here; the second then sees
-- the first's task.
SELECT pg_advisory_xact_lock(hashtextextended('unique_key:' || ($1::bigint)::text || ':' || $2, 0))
