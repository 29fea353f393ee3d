SELECT status, COUNT(*) AS n
FROM tasks
WHERE ($1::BIGINT IS NULL OR project_id = $1)
  AND ($2::TEXT IS NULL OR (spec::JSONB -> 'labels') ? $2)
  AND ($3::TEXT IS NULL
       OR (spec::JSONB -> 'steps') @> jsonb_build_array(jsonb_build_object('agent', $3::TEXT)))
  AND ($4::TEXT IS NULL OR strpos(lower(title), lower($4)) > 0 OR id::TEXT = $4)
  AND ($5::BIGINT IS NULL OR workflow_id = $5)
GROUP BY status
