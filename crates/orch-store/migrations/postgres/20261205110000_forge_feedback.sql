-- The feedback loop of tasks' pull requests: every cause orch reacted to (a failing check on a
-- head, a review, a review comment, a merge, a closing), recorded in the same transaction as
-- the reaction (a follow-up run, `needs_review`, a merge or the finishing writes), so a cause
-- is reacted to once across crashes. A follow-up's first cause carries its round's kind: a
-- task's rounds of a kind are the rows with it.
CREATE TABLE forge_reactions (
    task_id     BIGINT NOT NULL REFERENCES tasks (id),
    cause       TEXT    NOT NULL,
    reaction    TEXT    NOT NULL
                        CHECK (reaction IN ('follow_up', 'merge', 'finish', 'needs_review')),
    round_kind  TEXT    CHECK (round_kind IN ('checks', 'reviews', 'conflict')),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (task_id, cause)
);
