"""Settings for commands run in a subprocess: the test settings with the memory store."""

from tests.settings import *  # noqa: F403

BELUGA_WORKFLOWS = {
    "STORE": {"BACKEND": "memory", "OPTIONS": {}},
    "EXECUTOR": {"BACKEND": "local", "OPTIONS": {}},
    "HOOKS": [],
}
