"""Settings of the benchmark's processes (the client in ``bench/run.py`` and the Celery workers).

The example project's settings, read from the environment ``bench/run.py`` gives (``DATABASE_URL``
of the ``beluga_bench`` PostgreSQL database, ``CELERY_BROKER_URL`` of a Redis database of its own),
plus the app holding the benchmark's workflows and baseline tasks, a Celery result backend for the
baseline (a Celery chain's result travels through it), and ``DEBUG`` off, as in production.
"""

from beluga_project.settings import *  # noqa: F403
from beluga_project.settings import BELUGA_WORKFLOWS, DATABASES, INSTALLED_APPS, env

DEBUG = False
INSTALLED_APPS = [*INSTALLED_APPS, "bench.apps.BenchConfig"]

# Persistent connections, as a production worker runs them. With the default CONN_MAX_AGE = 0,
# Celery's Django fixup closes the connection after every task and the next task reconnects.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("BENCH_CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

CELERY_TASK_DEFAULT_QUEUE = env.str("BENCH_QUEUE", default="beluga-bench")
CELERY_RESULT_BACKEND = env.str("CELERY_BROKER_URL")

BELUGA_WORKFLOWS["EXECUTOR"]["OPTIONS"] = {"app": "beluga_project.celery.app"}
