-- Token usage and cost of every agent session, per run and step (usage accounting), and the
-- follow-up messages of `orch task reply`.

CREATE TABLE agent_usage (
    run_id         INTEGER NOT NULL REFERENCES runs (id),
    step           TEXT    NOT NULL,
    task_id        INTEGER NOT NULL REFERENCES tasks (id),
    agent          TEXT    NOT NULL,
    model          TEXT,
    session_id     TEXT,
    input_tokens   INTEGER NOT NULL CHECK (input_tokens >= 0),
    output_tokens  INTEGER NOT NULL CHECK (output_tokens >= 0),
    cost_usd       REAL    NOT NULL CHECK (cost_usd >= 0),
    -- UTC day of the report, `YYYY-MM-DD`, for per-day totals.
    day            TEXT    NOT NULL,
    recorded_at    INTEGER NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE INDEX agent_usage_by_task ON agent_usage (task_id);
CREATE INDEX agent_usage_by_day ON agent_usage (day);

CREATE TABLE task_replies (
    id             INTEGER PRIMARY KEY,
    task_id        INTEGER NOT NULL REFERENCES tasks (id),
    message        TEXT    NOT NULL,
    -- The session the reply resumes, and the agent and step it belongs to.
    agent          TEXT    NOT NULL,
    step           TEXT    NOT NULL,
    session_id     TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    -- The run that answered it successfully; NULL while pending.
    answered_run   INTEGER REFERENCES runs (id)
);
CREATE INDEX task_replies_pending ON task_replies (task_id) WHERE answered_run IS NULL;

-- A follow-up reopens a finished task for a new run, so a task may now complete once per run
-- (still never twice for the same run).
DROP INDEX events_one_complete_per_task;
CREATE UNIQUE INDEX events_one_complete_per_run ON events (run_id) WHERE kind = 'complete';
