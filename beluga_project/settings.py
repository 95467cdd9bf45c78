"""Settings of the example project, read from the environment through django-environ.

With no environment at all it runs embedded: SQLite in ``var/`` and the ``django_tasks`` executor
on the ORM task backend (``manage.py db_worker``), so ``bin/run`` works on a fresh machine with no
servers. Set ``DATABASE_URL`` and ``CELERY_BROKER_URL`` (and ``REDIS_URL``/``NATS_URL``/
``BELUGA_STORE``...) for production: with a broker configured the executor is Celery.
``BELUGA_EXECUTOR`` chooses it outright (``celery``, ``django_tasks``, ``local``).
"""

import importlib.util
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("BELUGA_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env(
    DEBUG=(bool, True),
    ALLOWED_HOSTS=(list, ["*"]),
    BELUGA_STORE=(str, "django"),
    BELUGA_LEASE_SECONDS=(float, 30.0),
    BELUGA_RECOVER_INTERVAL=(float, 5.0),
)
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env.str("SECRET_KEY", default="dev-only-not-secret-change-me")
DEBUG = env("DEBUG")
ALLOWED_HOSTS = env("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "beluga_workflows",
    "beluga_project.demo",
]
# Django's Tasks framework (the tasks extra): the django_tasks executor's queue in this database.
_HAS_DJANGO_TASKS = importlib.util.find_spec("django_tasks_db") is not None
if _HAS_DJANGO_TASKS:
    INSTALLED_APPS += ["django_tasks", "django_tasks_db"]
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": []}}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

if importlib.util.find_spec("whitenoise"):
    # Serves the admin's static files when gunicorn runs the site (the docker-compose image).
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "beluga_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The project's own templates, before the apps': admin/base_site.html brands the admin.
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "beluga_project.wsgi.application"
ASGI_APPLICATION = "beluga_project.asgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a worker writes; the timeout rides out short locks.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE",
         "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
# Keep database connections between requests and Celery tasks (a reconnect costs more than a
# workflow step); a connection older than this or failing its health check is replaced.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# -- Celery -----------------------------------------------------------------------------------------
_BROKER_CONFIGURED = bool(env.str("CELERY_BROKER_URL", default=""))
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.5,  # seconds between looks at the queue folder
    }
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every database connection before and after each task unless this is
# set (then only every N tasks); beluga_workflows' task applies CONN_MAX_AGE/CONN_HEALTH_CHECKS
# itself before each run, as Django does per request.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# -- beluga_workflows ---------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
NATS_URL = env.str("NATS_URL", default="nats://127.0.0.1:4222")
KAFKA_BOOTSTRAP_SERVERS = env.str("KAFKA_BOOTSTRAP_SERVERS", default="127.0.0.1:9092")

# The OPTIONS of each store backend, from the environment (README, "Stores").
_STORE_OPTIONS = {
    "redis": {
        "url": REDIS_URL,
        "key_prefix": env.str("BELUGA_REDIS_KEY_PREFIX", default="beluga_workflows:"),
    },
    "nats": {
        "url": NATS_URL,
        "bucket": env.str("BELUGA_NATS_BUCKET", default="beluga_workflows"),
    },
    "kafka": {
        "bootstrap_servers": KAFKA_BOOTSTRAP_SERVERS,
        "topic": env.str("BELUGA_KAFKA_TOPIC", default="beluga-workflows"),
        "fetch_wait_ms": env.int("BELUGA_KAFKA_FETCH_WAIT_MS", default=100),
    },
    "inngest": {
        "base_url": env.str("INNGEST_BASE_URL", default="http://127.0.0.1:8288"),
        "event_key": env.str("INNGEST_EVENT_KEY", default=""),
    },
    "dapr": {
        "base_url": env.str("DAPR_BASE_URL", default="http://127.0.0.1:3500"),
        "store_name": env.str("DAPR_STORE_NAME", default="statestore"),
        "api_token": env.str("DAPR_API_TOKEN", default=""),
    },
}

# Celery where a broker is configured (production), else Django's Tasks framework on this
# database when installed (no broker at all), else Celery on the file-system broker.
_EXECUTOR = env.str("BELUGA_EXECUTOR", default="") or (
    "django_tasks" if _HAS_DJANGO_TASKS and not _BROKER_CONFIGURED else "celery")

BELUGA_WORKFLOWS = {
    "STORE": {"BACKEND": env("BELUGA_STORE"), "OPTIONS": _STORE_OPTIONS.get(env("BELUGA_STORE"), {})},
    "EXECUTOR": {"BACKEND": _EXECUTOR, "OPTIONS": {}},
    "HOOKS": [],
    "LEASE_SECONDS": env("BELUGA_LEASE_SECONDS"),
    "RECOVER_INTERVAL": env("BELUGA_RECOVER_INTERVAL"),
}

# The recovery sweep: sends runs whose timers are due or whose worker died (see README).
# A sweep still queued after a few intervals is dropped: a later one does the same work.
CELERY_BEAT_SCHEDULE = {
    "beluga-workflows-recover": {
        "task": "beluga_workflows.recover_workflows",
        "schedule": BELUGA_WORKFLOWS["RECOVER_INTERVAL"],
        "options": {"expires": BELUGA_WORKFLOWS["RECOVER_INTERVAL"] * 6},
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "beluga_workflows API",
    "DESCRIPTION": "Start, watch, signal, query and cancel durable workflows.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"beluga_workflows": {"handlers": ["console"], "level": env.str("BELUGA_LOG_LEVEL", default="WARNING")}},
}
