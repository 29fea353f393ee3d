-- After inserting rows with their ids: the next id of each identity column follows the largest.
SELECT setval(pg_get_serial_sequence('projects', 'id'), COALESCE((SELECT MAX(id) FROM projects), 0) + 1, false);
SELECT setval(pg_get_serial_sequence('workflows', 'id'), COALESCE((SELECT MAX(id) FROM workflows), 0) + 1, false);
SELECT setval(pg_get_serial_sequence('tasks', 'id'), COALESCE((SELECT MAX(id) FROM tasks), 0) + 1, false);
SELECT setval(pg_get_serial_sequence('runs', 'id'), COALESCE((SELECT MAX(id) FROM runs), 0) + 1, false);
SELECT setval(pg_get_serial_sequence('events', 'id'), COALESCE((SELECT MAX(id) FROM events), 0) + 1, false);
SELECT setval(pg_get_serial_sequence('task_replies', 'id'), COALESCE((SELECT MAX(id) FROM task_replies), 0) + 1, false);
SELECT setval(pg_get_serial_sequence('info_requests', 'id'), COALESCE((SELECT MAX(id) FROM info_requests), 0) + 1, false);
SELECT setval(pg_get_serial_sequence('jobs', 'id'), COALESCE((SELECT MAX(id) FROM jobs), 0) + 1, false);
SELECT setval(pg_get_serial_sequence('forge_outbox', 'id'), COALESCE((SELECT MAX(id) FROM forge_outbox), 0) + 1, false);
