-- Gated claims take turns: counting what runs and claiming under the limits happen under one
-- transaction-scoped advisory lock, so two claimers cannot both count 1/2 and both claim.
SELECT pg_advisory_xact_lock($1)
