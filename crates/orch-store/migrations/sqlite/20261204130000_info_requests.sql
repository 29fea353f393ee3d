-- Info requests (`orch ask`, sim's `@ask`): a step of a run asked a human for named values and
-- its task waits in `awaiting_input` without a run. One open request per task at most.

CREATE TABLE info_requests (
    id          INTEGER PRIMARY KEY,
    task_id     INTEGER NOT NULL REFERENCES tasks (id),
    -- The run that asked (it ended `requeued` when it parked).
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    -- The step that asked: the values go to this step of the next runs.
    step        TEXT    NOT NULL,
    -- A JSON array of `{name, secret, optional, file, description}`.
    keys        TEXT    NOT NULL,
    hint        TEXT,
    reason      TEXT,
    state       TEXT    NOT NULL CHECK (state IN ('open', 'answered', 'expired', 'closed')),
    created_at  INTEGER NOT NULL,
    -- When an unanswered request sends its task to `needs_review` (NULL: never).
    expires_at  INTEGER,
    closed_at   INTEGER,
    closed_by   TEXT
);
CREATE UNIQUE INDEX info_requests_one_open ON info_requests (task_id) WHERE state = 'open';
CREATE INDEX info_requests_by_state ON info_requests (state, expires_at);

-- The answered values. A secret value is stored only sealed (`secret_box`: `enc:v1:...`); the
-- CHECK refuses a secret in clear whoever writes it.
CREATE TABLE info_values (
    request_id  INTEGER NOT NULL REFERENCES info_requests (id),
    task_id     INTEGER NOT NULL REFERENCES tasks (id),
    key         TEXT    NOT NULL,
    secret      INTEGER NOT NULL CHECK (secret IN (0, 1)),
    value       TEXT    NOT NULL,
    CHECK (secret = 0 OR value LIKE 'enc:v1:%'),
    PRIMARY KEY (request_id, key)
);
CREATE INDEX info_values_by_task ON info_values (task_id, request_id);
