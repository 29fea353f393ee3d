-- The reviewer's verdict on a run (`[review]`): one row per reviewed run with a valid answer,
-- handed to later claims of the task so a worker on any machine counts the rounds and carries
-- the feedback (rather than reading `review.json` files from its own home).

CREATE TABLE reviews (
    run_id       INTEGER PRIMARY KEY REFERENCES runs (id),
    task_id      INTEGER NOT NULL REFERENCES tasks (id),
    round        INTEGER NOT NULL CHECK (round >= 1),
    verdict      TEXT    NOT NULL CHECK (verdict IN ('approve', 'reject')),
    -- A JSON array of strings.
    reasons      TEXT    NOT NULL,
    -- Whether this rejection sent the task to `needs_review`.
    escalated    INTEGER NOT NULL CHECK (escalated IN (0, 1)),
    recorded_at  INTEGER NOT NULL
);
CREATE INDEX reviews_by_task ON reviews (task_id, run_id);
