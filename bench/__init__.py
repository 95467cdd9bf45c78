"""The benchmark of beluga_workflows against a Celery chain (and DBOS when installed): ``bin/bench``."""
