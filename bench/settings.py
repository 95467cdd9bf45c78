"""Settings of the benchmark's processes (the client in ``bench/run.py`` and the Celery workers).

The example project's settings, read from the environment ``bench/run.py`` gives (``DATABASE_URL``
of the ``beluga_bench`` PostgreSQL database, ``CELERY_BROKER_URL`` of a Redis database of its own),
plus the app holding the benchmark's workflows and baseline tasks, a Celery result backend for the
baseline (a Celery chain's result travels through it), and ``DEBUG`` off, as in production.
"""

from beluga_project.settings import *  # noqa: F403
from beluga_project.settings import BELUGA_WORKFLOWS, DATABASES, INSTALLED_APPS, env

# Off, as in production; BENCH_DEBUG=true (with --django-defaults) measures Django's default.
DEBUG = env.bool("BENCH_DEBUG", default=False)
INSTALLED_APPS = [*INSTALLED_APPS, "bench.apps.BenchConfig"]

# The example project's settings keep worker connections (CONN_MAX_AGE, CELERY_DB_REUSE_MAX);
# BENCH_CONN_MAX_AGE=0 CELERY_DB_REUSE_MAX=0 measures a reconnect per task instead.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("BENCH_CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("BENCH_CONN_HEALTH_CHECKS", default=True)

CELERY_TASK_DEFAULT_QUEUE = env.str("BENCH_QUEUE", default="beluga-bench")
CELERY_RESULT_BACKEND = env.str("CELERY_BROKER_URL")

if BELUGA_WORKFLOWS["EXECUTOR"]["BACKEND"] == "celery":  # bench/django_tasks.py's db_workers: not
    BELUGA_WORKFLOWS["EXECUTOR"]["OPTIONS"] = {"app": "beluga_project.celery.app"}
# The project's (and the README's) prefetch of 1; BENCH_PREFETCH=4 measures the alternative.
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("BENCH_PREFETCH", default=1)
