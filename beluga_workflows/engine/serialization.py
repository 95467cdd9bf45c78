"""JSON serialisation of inputs, results, payloads and errors.

Every value that enters a run goes through ``to_json_value``: it is encoded with Django's JSON
encoder (so ``datetime``, ``date``, ``Decimal`` and ``UUID`` are accepted) and decoded again. The
workflow then sees the decoded form both when the step runs and when it is replayed, so live and
replayed executions never differ in type (a ``datetime`` result comes back as its ISO string).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from .errors import InvalidInputError

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "dumps", "loads", "to_json_value"]

DEFAULT_MAX_PAYLOAD_BYTES = 2 * 1024 * 1024


def dumps(value: Any) -> str:
    """Encode a JSON value compactly (Django's encoder types included)."""
    return json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":"), allow_nan=False)


def loads(text: str | bytes) -> Any:
    """Decode JSON text (``ValueError`` if it is not JSON)."""
    return json.loads(text)


def to_json_value(value: Any, what: str, *, max_bytes: int | None = DEFAULT_MAX_PAYLOAD_BYTES) -> Any:
    """Return ``value`` as it will be stored and replayed, or refuse it.

    Args:
        value: the value to check.
        what: how the error names it ("workflow input", "signal payload", ...).
        max_bytes: the largest encoded size accepted; ``None`` for no limit.

    Raises:
        InvalidInputError: the value is not JSON-serialisable or is too large.
    """
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, str) and max_bytes is not None and len(value) > max_bytes // 4:
            _check_size(dumps(value), what, max_bytes)
        return value
    try:
        text = dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} is not JSON-serialisable: {exc}") from None
    _check_size(text, what, max_bytes)
    return json.loads(text)


def _check_size(text: str, what: str, max_bytes: int | None) -> None:
    if max_bytes is None:
        return
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise InvalidInputError(
            f"{what} is too large: {size} bytes encoded, the limit is {max_bytes} bytes"
        )
