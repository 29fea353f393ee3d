-- The forge (GitHub) side of orch: which repository a project is linked to, what links each
-- task to its issue and pull request, and the durable outbox of writes orch owes the forge.

-- A project's repository on its forge (`orch init --repo owner/repo`).
CREATE TABLE project_forges (
    project_id  INTEGER PRIMARY KEY REFERENCES projects (id),
    kind        TEXT    NOT NULL CHECK (kind IN ('github')),
    repo        TEXT    NOT NULL,
    linked_at   INTEGER NOT NULL
);

-- A task's issue (where it came from, or what it was published as), its pull request, the
-- pushed branch and commit, and its marker comment. An issue is one task's: at most one row
-- per (project, repo, issue number).
CREATE TABLE task_forge_links (
    task_id            INTEGER PRIMARY KEY REFERENCES tasks (id),
    project_id         INTEGER NOT NULL REFERENCES projects (id),
    repo               TEXT    NOT NULL,
    issue_number       INTEGER CHECK (issue_number > 0),
    pr_number          INTEGER CHECK (pr_number > 0),
    pr_url             TEXT,
    head_branch        TEXT,
    pushed_commit      TEXT,
    marker_comment_id  INTEGER,
    updated_at         INTEGER NOT NULL
);
CREATE UNIQUE INDEX task_forge_links_issue
    ON task_forge_links (project_id, repo, issue_number) WHERE issue_number IS NOT NULL;

-- Writes to the forge, each stored once under its idempotency key, sent by a dispatcher that
-- holds a lease on it (`lease_owner` until `lease_expires_at`), done with the forge's result or
-- retried after `next_attempt_at` until it is `failed`.
CREATE TABLE forge_outbox (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key   TEXT    NOT NULL UNIQUE,
    project_id        INTEGER NOT NULL REFERENCES projects (id),
    task_id           INTEGER REFERENCES tasks (id),
    event_id          INTEGER,
    op                TEXT    NOT NULL,
    state             TEXT    NOT NULL DEFAULT 'pending'
                              CHECK (state IN ('pending', 'done', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    last_error        TEXT,
    result            TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX forge_outbox_due ON forge_outbox (state, next_attempt_at);
CREATE INDEX forge_outbox_task ON forge_outbox (task_id);
