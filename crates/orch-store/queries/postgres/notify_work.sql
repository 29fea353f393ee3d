SELECT pg_notify('orch_work', '')
