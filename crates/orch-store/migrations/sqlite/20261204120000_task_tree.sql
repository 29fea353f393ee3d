-- Unique keys and parents (issue 14). `unique_key` (also in the spec) is unique among a
-- project's live tasks: the partial index lets the database itself refuse a second live task
-- with the key, however many servers submit at once. (`key` is the workflow-local id, a
-- different thing.) A parent's children are found through `tasks_by_parent`.
ALTER TABLE tasks ADD COLUMN unique_key TEXT;

CREATE UNIQUE INDEX tasks_one_live_per_unique_key ON tasks (project_id, unique_key)
    WHERE unique_key IS NOT NULL
      AND status NOT IN ('done', 'failed', 'needs_review', 'cancelled');

CREATE INDEX tasks_by_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
