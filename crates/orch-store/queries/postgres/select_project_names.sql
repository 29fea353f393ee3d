SELECT name FROM projects
