"""Training jobs: the table, the lifecycle services and the queue hand-off."""
