"""Running jobs: the supervisor, worker processes and the executor."""
