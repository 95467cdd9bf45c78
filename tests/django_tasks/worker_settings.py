"""Settings of the db_worker processes the django_tasks integration tests start.

The example project's settings read from the environment the tests give (``DATABASE_URL`` of the
session's PostgreSQL or SQLite database, ``BELUGA_EXECUTOR=django_tasks``, the lease and sweep
interval), plus the apps holding the test workflows.
"""

from beluga_project.settings import *  # noqa: F403
from beluga_project.settings import BELUGA_WORKFLOWS, INSTALLED_APPS, env

INSTALLED_APPS = [*INSTALLED_APPS, "tests.celery.apps.CeleryTestsConfig",
                  "tests.django_tasks.apps.DjangoTasksTestsConfig"]
DEBUG = False

BELUGA_WORKFLOWS["EXECUTOR"]["OPTIONS"] = {
    "sweep_grace": env.float("BELUGA_TEST_SWEEP_GRACE", default=30.0),
    "defer_limit": env.float("BELUGA_TEST_DEFER_LIMIT", default=60.0),
}
