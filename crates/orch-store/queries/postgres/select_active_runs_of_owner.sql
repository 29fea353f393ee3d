SELECT id FROM runs WHERE state = 'active' AND left(owner, length($1)) = $1 ORDER BY id
