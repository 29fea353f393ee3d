-- Tasks with a pull request whose merge or closing was not handled yet.
SELECT l.task_id
FROM task_forge_links l
WHERE l.pr_number IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM forge_reactions r
      WHERE r.task_id = l.task_id
        AND r.cause IN ('merged:pr-' || l.pr_number, 'closed:pr-' || l.pr_number))
ORDER BY l.task_id
