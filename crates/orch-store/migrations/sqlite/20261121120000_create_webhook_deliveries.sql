-- Webhook deliveries already acted on, so a replayed delivery creates nothing twice. `source`
-- names the id space (`github` for X-GitHub-Delivery, `github-issue` for `<repo>#<number>`,
-- `tasks` for X-Delivery-Id); `task_id` is the task the first delivery created.
CREATE TABLE webhook_deliveries (
    source       TEXT    NOT NULL,
    delivery_id  TEXT    NOT NULL,
    task_id      INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (source, delivery_id)
) WITHOUT ROWID;
