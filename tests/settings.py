"""Test settings: the example project's, plus a second database alias on the real PostgreSQL.

``default`` is SQLite (or whatever ``DATABASE_URL`` says); ``postgres`` points at the PostgreSQL
server of ``BELUGA_TEST_POSTGRES_URL`` so one pytest run covers the django store on both.
``outage`` is a database on a PostgreSQL server of its own that the outage tests start and crash.
``celery`` is the PostgreSQL database that the Celery integration tests (``tests/celery``) share
with the worker processes they start: not a pytest-django test database, but one those tests
create, migrate and drop themselves, named after this test process so sessions never collide.
"""

import os

import environ

from beluga_project.settings import *  # noqa: F403
from beluga_project.settings import DATABASES, VAR_DIR, env

DATABASES["postgres"] = environ.Env.db_url_config(
    env.str("BELUGA_TEST_POSTGRES_URL", default="postgres://postgres@127.0.0.1:5432/beluga")
)
DATABASES["postgres"]["TEST"] = {"NAME": "test_beluga"}

DATABASES["celery"] = environ.Env.db_url_config(
    env.str("BELUGA_TEST_CELERY_DATABASE_URL",
            default="postgres://postgres@127.0.0.1:5432/beluga_celery")
)
DATABASES["celery"]["NAME"] = f"{DATABASES['celery']['NAME']}_{os.getpid()}"

# Django's default SQLite entries, nothing tuned (no OPTIONS: deferred transactions, no WAL, the
# default timeout), as a site that adds the app to its own settings has them. ``plain_file`` is a
# database file the tests migrate themselves; ``plain_memory`` is pytest-django's test database for
# it (in memory, shared cache) for the tests that ask for that alias.
DATABASES["plain_file"] = {"ENGINE": "django.db.backends.sqlite3",
                           "NAME": str(VAR_DIR / f"plain-{os.getpid()}.sqlite3")}
DATABASES["plain_memory"] = {"ENGINE": "django.db.backends.sqlite3",
                             "NAME": str(VAR_DIR / f"plain-memory-{os.getpid()}.sqlite3")}

# The private PostgreSQL server that tests/celery/test_outages.py starts, crashes and restarts.
OUTAGE_POSTGRES_PORT = env.int("BELUGA_TEST_OUTAGE_POSTGRES_PORT", default=54329)
DATABASES["outage"] = environ.Env.db_url_config(
    f"postgres://postgres@127.0.0.1:{OUTAGE_POSTGRES_PORT}/beluga_outage"
)

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

BELUGA_WORKFLOWS = {
    "STORE": {"BACKEND": "django", "OPTIONS": {}},
    "EXECUTOR": {"BACKEND": "local", "OPTIONS": {}},
    "HOOKS": [],
}

# The databases the django_tasks integration tests (tests/django_tasks) share with the db_worker
# processes they start: a PostgreSQL database and a SQLite file, made, migrated and dropped by
# those tests (like ``celery``), named after this test process.
DATABASES["django_tasks_pg"] = {**DATABASES["celery"], "NAME": f"beluga_dtasks_{os.getpid()}"}
DATABASES["django_tasks_sqlite"] = {
    "ENGINE": "django.db.backends.sqlite3", "NAME": str(VAR_DIR / f"dtasks-{os.getpid()}.sqlite3"),
    "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
}
