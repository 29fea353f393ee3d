LISTEN orch_work
