SELECT status, COUNT(*) AS n
FROM tasks
WHERE (?1 IS NULL OR project_id = ?1)
  AND (?2 IS NULL OR EXISTS (SELECT 1 FROM json_each(tasks.spec, '$.labels') WHERE value = ?2))
  AND (?3 IS NULL OR EXISTS (SELECT 1 FROM json_each(tasks.spec, '$.steps')
                             WHERE json_extract(value, '$.agent') = ?3))
  AND (?4 IS NULL OR instr(lower(title), lower(?4)) > 0 OR CAST(id AS TEXT) = ?4)
  AND (?5 IS NULL OR workflow_id = ?5)
GROUP BY status
