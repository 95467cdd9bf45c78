"""``BELUGA_WORKFLOWS["RETENTION"]``: read like every duration, checked by ``manage.py check``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured

from beluga_workflows.checks import check_settings
from beluga_workflows.conf import DEFAULTS, retention_seconds
from beluga_workflows.executor import get_executor

BASE = {"STORE": {"BACKEND": "memory", "OPTIONS": {}}, "EXECUTOR": {"BACKEND": "local"}}


def retention_errors(settings, value, store=None) -> list[str]:
    settings.BELUGA_WORKFLOWS = {**BASE, "RETENTION": value, **({"STORE": store} if store else {})}
    return [f"{m.msg} HINT: {m.hint}" for m in check_settings() if m.id == "beluga_workflows.E007"]


def test_the_default_keeps_every_run(settings):
    settings.BELUGA_WORKFLOWS = dict(BASE)
    assert DEFAULTS["RETENTION"] is None
    assert get_executor().retention is None


@pytest.mark.parametrize(("value", "seconds"), [
    (86400, 86400.0), (2.5, 2.5), (timedelta(days=30), 30 * 86400.0), ("30d", 30 * 86400.0),
    ("12h", 43200.0), (None, None),
])
def test_seconds_a_timedelta_or_a_duration_string(settings, value, seconds):
    assert retention_seconds(value) == seconds
    assert retention_errors(settings, value) == []
    assert get_executor().retention == seconds


@pytest.mark.parametrize(("value", "says"), [
    ("30", "is not a duration"), ("a month", "is not a duration"), (-1, "must not be negative"),
    (0, "must be a positive duration"), (True, "not bool"), ([30], "not list"),
])
def test_a_bad_value_is_a_check_error_with_a_hint(settings, value, says):
    errors = retention_errors(settings, value)
    assert len(errors) == 1 and says in errors[0] and 'BELUGA_WORKFLOWS["RETENTION"]' in errors[0]
    assert 'such as "30d"' in errors[0]
    with pytest.raises(ImproperlyConfigured, match="RETENTION"):
        get_executor()


def test_a_store_that_cannot_purge_is_a_check_error(settings):
    from tests.stores.http_servers import InngestServer

    with InngestServer() as server:
        errors = retention_errors(settings, "30d", store={
            "BACKEND": "inngest", "OPTIONS": {"base_url": server.url}})
    assert len(errors) == 1 and "inngest workflow store cannot find ended runs" in errors[0]
