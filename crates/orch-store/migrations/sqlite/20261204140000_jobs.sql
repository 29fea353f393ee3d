-- Cron jobs (`orch job`): a schedule in a time zone that submits a task or a workflow at each
-- slot. `last_slot` is the newest slot decided (fired or skipped), so a restarted scheduler
-- knows what it missed.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    project_id  INTEGER NOT NULL REFERENCES projects(id),
    schedule    TEXT    NOT NULL,
    timezone    TEXT    NOT NULL,
    missed      TEXT    NOT NULL CHECK (missed IN ('skip', 'catch-up')),
    target      TEXT    NOT NULL CHECK (target IN ('task', 'workflow')),
    -- The task spec (JSON) or the workflow file (YAML), redacted like any submission.
    source      TEXT    NOT NULL,
    enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    last_slot   INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- One row per fired slot, written in the same transaction as the tasks it submitted: the
-- primary key is what makes a slot fire once however many schedulers run.
CREATE TABLE job_firings (
    job_id     INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    slot_at    INTEGER NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('scheduled', 'catch_up', 'manual')),
    -- The first task submitted (none when the submission was refused: `error` says why).
    task_id    INTEGER REFERENCES tasks(id),
    error      TEXT,
    fired_at   INTEGER NOT NULL,
    PRIMARY KEY (job_id, slot_at)
);
CREATE INDEX job_firings_by_task ON job_firings (task_id);
