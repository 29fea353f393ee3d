SELECT repo FROM project_forges WHERE project_id = $1
