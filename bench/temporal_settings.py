"""Settings of ``bench/temporal.py`` and its Temporal worker: the benchmark's workflows on the
``temporal`` executor and store (``BENCH_TEMPORAL_TARGET``, ``BENCH_TEMPORAL_QUEUE``)."""

from beluga_project.settings import *  # noqa: F403
from beluga_project.settings import INSTALLED_APPS, env

INSTALLED_APPS = [*INSTALLED_APPS, "bench.apps.BenchConfig"]
DEBUG = False

_TEMPORAL = {"target": env.str("BENCH_TEMPORAL_TARGET", default="127.0.0.1:7233"),
             "namespace": "default",
             "task_queue": env.str("BENCH_TEMPORAL_QUEUE", default="beluga-bench")}
BELUGA_WORKFLOWS = {
    "STORE": {"BACKEND": "temporal", "OPTIONS": dict(_TEMPORAL)},
    "EXECUTOR": {"BACKEND": "temporal", "OPTIONS": dict(_TEMPORAL)},
    "HOOKS": [],
}
