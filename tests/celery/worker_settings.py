"""Settings of the Celery worker (and client) processes the integration tests start.

The example project's settings, read from the environment the tests give (``DATABASE_URL`` of the
shared PostgreSQL database, ``CELERY_BROKER_URL`` of the Redis broker, ``BELUGA_EXECUTOR=celery``,
``BELUGA_STORE=django``, ``BELUGA_LEASE_SECONDS``...), plus the app holding the test workflows.
"""

from beluga_project.settings import *  # noqa: F403
from beluga_project.settings import BELUGA_WORKFLOWS, INSTALLED_APPS, env

INSTALLED_APPS = [*INSTALLED_APPS, "tests.celery.apps.CeleryTestsConfig"]

# Each test session consumes its own queue, so sessions running side by side never share work.
CELERY_TASK_DEFAULT_QUEUE = env.str("BELUGA_TEST_QUEUE", default="celery")

BELUGA_WORKFLOWS["EXECUTOR"]["OPTIONS"] = {
    "countdown_limit": env.float("BELUGA_TEST_COUNTDOWN_LIMIT", default=60.0),
    "sweep_grace": env.float("BELUGA_TEST_SWEEP_GRACE", default=30.0),
    "fan_out_grace": env.float("BELUGA_TEST_FAN_OUT_GRACE", default=30.0),
    "activity_redispatch": env.float("BELUGA_TEST_ACTIVITY_REDISPATCH", default=300.0),
}

# Test workflows outside the app's ``workflows.py`` (which autodiscovery imports): the parallel
# steps' (tests/celery/test_parallel.py).
CELERY_IMPORTS = ["tests.celery.parallel_workflows"]

# tests/celery/test_tracing.py: the workers trace runs and write their spans to this file.
if env.str("BELUGA_TEST_SPANS_FILE", default=""):
    BELUGA_WORKFLOWS["HOOKS"] = [*BELUGA_WORKFLOWS["HOOKS"], "tests.celery.tracing.worker_tracing_hooks"]
