-- Named leases in the database: which process holds a singleton duty (lease `scheduler`: stale
-- recovery, backoff timers, retention) and until when. A holder renews before `expires_at`;
-- anyone may take an expired lease over.
CREATE TABLE leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
