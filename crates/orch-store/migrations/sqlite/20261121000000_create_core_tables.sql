-- The durable task core: projects, workflows, tasks, dependencies, runs and the event log.
-- Times are milliseconds since the Unix epoch. Statuses are text with a CHECK so a bad value
-- can never be stored.

CREATE TABLE projects (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    path        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE workflows (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects (id),
    name        TEXT,
    source      TEXT,
    created_at  INTEGER NOT NULL
);

CREATE TABLE tasks (
    id             INTEGER PRIMARY KEY,
    project_id     INTEGER NOT NULL REFERENCES projects (id),
    workflow_id    INTEGER REFERENCES workflows (id),
    parent_id      INTEGER REFERENCES tasks (id),
    key            TEXT,
    title          TEXT    NOT NULL,
    priority       INTEGER NOT NULL DEFAULT 0,
    spec           TEXT    NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN (
                       'waiting', 'queued', 'awaiting_approval', 'running', 'awaiting_input',
                       'retry_wait', 'blocked', 'done', 'failed', 'needs_review', 'cancelled')),
    status_reason  TEXT,
    approved       INTEGER NOT NULL DEFAULT 0,
    attempts_used  INTEGER NOT NULL DEFAULT 0,
    max_attempts   INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_count      INTEGER NOT NULL DEFAULT 0,
    not_before     INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- The claim query walks this index: queued tasks, highest priority first, then oldest. It also
-- serves listing by status and counting. (A plain index on status alone would tempt the planner
-- into sorting every queued task on each claim.)
CREATE INDEX tasks_by_status ON tasks (status, priority DESC, id);
-- Partial, so that status changes outside retry_wait never touch it.
CREATE INDEX tasks_retry_due ON tasks (not_before) WHERE status = 'retry_wait';
CREATE INDEX tasks_workflow ON tasks (workflow_id);

-- `waived` is set by `orch task unblock`: the user chose to go ahead without that dependency.
CREATE TABLE task_deps (
    task_id  INTEGER NOT NULL REFERENCES tasks (id),
    dep_id   INTEGER NOT NULL REFERENCES tasks (id),
    waived   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, dep_id),
    CHECK (task_id <> dep_id)
) WITHOUT ROWID;

CREATE INDEX task_deps_by_dep ON task_deps (dep_id, task_id);

-- A run's id is also its lease's fencing token: SQLite gives a new row max(id) + 1, and runs are
-- never deleted (trigger below), so tokens only grow across a home.
CREATE TABLE runs (
    id                INTEGER PRIMARY KEY,
    task_id           INTEGER NOT NULL REFERENCES tasks (id),
    attempt           INTEGER NOT NULL,
    owner             TEXT    NOT NULL,
    lease_expires_at  INTEGER NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN (
                          'active', 'succeeded', 'failed', 'escalated', 'lost', 'cancelled', 'requeued')),
    started_at        INTEGER NOT NULL,
    ended_at          INTEGER,
    outcome           TEXT,
    UNIQUE (task_id, attempt)
);

-- At most one active run per task, enforced by the database itself. Stale recovery walks this
-- index too: it holds only active runs, a handful at any time.
CREATE UNIQUE INDEX runs_one_active_per_task ON runs (task_id) WHERE state = 'active';

CREATE TRIGGER runs_refuse_delete BEFORE DELETE ON runs
BEGIN
    SELECT RAISE(ABORT, 'runs are never deleted: their ids are fencing tokens');
END;

CREATE TABLE events (
    id           INTEGER PRIMARY KEY,
    task_id      INTEGER NOT NULL REFERENCES tasks (id),
    run_id       INTEGER REFERENCES runs (id),
    at           INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    from_status  TEXT,
    to_status    TEXT    NOT NULL,
    reason       TEXT,
    data         TEXT    NOT NULL DEFAULT '{}'
);

CREATE INDEX events_by_task ON events (task_id, id);
-- A task is completed at most once, whatever happens to the processes writing here.
CREATE UNIQUE INDEX events_one_complete_per_task ON events (task_id) WHERE kind = 'complete';

-- The event log is append-only.
CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: UPDATE is refused');
END;

CREATE TRIGGER events_refuse_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: DELETE is refused');
END;
