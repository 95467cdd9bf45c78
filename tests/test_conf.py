"""The settings object: unknown keys are reported, dotted paths are imported once per value."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from beluga_workflows.checks import check_settings
from beluga_workflows.conf import workflow_settings
from beluga_workflows.engine.hooks import Hooks

BASE = {"STORE": {"BACKEND": "memory", "OPTIONS": {}}, "EXECUTOR": {"BACKEND": "local"}}

audit_hooks = Hooks()


def test_an_unknown_key_is_a_warning_that_suggests_the_setting_meant(settings):
    settings.BELUGA_WORKFLOWS = {**BASE, "LEASE_SECOND": 10, "HOKS": []}
    texts = sorted(f"{m.msg} {m.hint}" for m in check_settings() if m.id == "beluga_workflows.W002")
    assert len(texts) == 2
    assert "BELUGA_WORKFLOWS['HOKS'] is not a beluga_workflows setting" in texts[0]
    assert "Did you mean 'HOOKS'?" in texts[0]
    assert "Did you mean 'LEASE_SECONDS'?" in texts[1]


def test_known_keys_raise_no_warning(settings):
    settings.BELUGA_WORKFLOWS = {**BASE, "LEASE_SECONDS": 10, "HOOKS": []}
    assert [m.id for m in check_settings() if m.id == "beluga_workflows.W002"] == []


def test_dotted_paths_are_imported_once_per_settings_value(settings):
    settings.BELUGA_WORKFLOWS = {**BASE, "HOOKS": ["tests.test_conf.audit_hooks"]}
    first = workflow_settings.imported("HOOKS")
    assert first == [audit_hooks]
    assert workflow_settings.imported("HOOKS") is first
    settings.BELUGA_WORKFLOWS = {**BASE, "HOOKS": []}
    assert workflow_settings.imported("HOOKS") == []


def test_a_path_that_cannot_be_imported_names_the_setting(settings):
    settings.BELUGA_WORKFLOWS = {**BASE, "HOOKS": ["tests.test_conf.no_such_hooks"]}
    with pytest.raises(ImproperlyConfigured, match=r'BELUGA_WORKFLOWS\["HOOKS"\]: cannot import'):
        workflow_settings.imported("HOOKS")
    settings.BELUGA_WORKFLOWS = {**BASE, "HOOKS": "tests.test_conf.audit_hooks"}
    with pytest.raises(ImproperlyConfigured, match="must be a list of dotted paths"):
        workflow_settings.imported("HOOKS")
