DELETE FROM jobs WHERE name = $1
