-- Named leases for singleton duties (the leader of several servers): `holder` holds `name`
-- until `expires_at` (milliseconds since the Unix epoch) unless it renews.
CREATE TABLE leases (
    name        TEXT   PRIMARY KEY,
    holder      TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL
);
