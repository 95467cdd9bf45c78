"""Settings of the Temporal worker processes the tests start (and of their client side).

The test settings, plus the app holding the test workflows, with the ``temporal`` executor and
store on the server and task queue the tests give in the environment
(``BELUGA_TEST_TEMPORAL_TARGET``, ``BELUGA_TEST_TEMPORAL_QUEUE``).
"""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS, env

INSTALLED_APPS = [*INSTALLED_APPS, "tests.temporal.apps.TemporalTestsConfig"]

TEMPORAL_OPTIONS = {
    "target": env.str("BELUGA_TEST_TEMPORAL_TARGET", default="127.0.0.1:7233"),
    "namespace": "default",
    "task_queue": env.str("BELUGA_TEST_TEMPORAL_QUEUE", default="beluga-tests"),
}

BELUGA_WORKFLOWS = {
    "STORE": {"BACKEND": "temporal", "OPTIONS": dict(TEMPORAL_OPTIONS)},
    "EXECUTOR": {"BACKEND": "temporal", "OPTIONS": dict(TEMPORAL_OPTIONS)},
    "HOOKS": [],
}
