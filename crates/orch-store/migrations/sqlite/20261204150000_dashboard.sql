-- The web dashboard's sign-in state, in the database so that several servers share it and a
-- restart signs nobody out. Only SHA-256 hashes (hex) of the secrets are stored: the cookie
-- value and the one-time link's token never reach a row. Times are milliseconds since the epoch.

-- A signed-in browser: `actor` is the name its actions are recorded under.
CREATE TABLE dashboard_sessions (
    token_hash  TEXT    PRIMARY KEY,
    actor       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions (expires_at);

-- A one-time sign-in link (`orch serve`, `orch dashboard`): deleted when it is used.
CREATE TABLE dashboard_sign_in_links (
    token_hash  TEXT    PRIMARY KEY,
    actor       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
