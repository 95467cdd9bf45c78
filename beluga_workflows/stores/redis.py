"""The ``redis`` store: one hash per run holding its Go-layout document, plus sorted-set indexes.

Keys (``key_prefix`` defaults to ``"beluga_workflows:"``)::

    <prefix>run:<workflow id>     hash: doc (the JSON document), rev, status, type, wait
    <prefix>all                   zset of ids by creation time (microseconds)
    <prefix>status:<status>       zset of ids by creation time, one per status
    <prefix>type:<workflow type>  zset of ids by creation time, one per type
    <prefix>ids                   zset of ids, all scores 0 (lexical order: id-prefix search)
    <prefix>wake                  zset of open runs by wake-up time (what ``due`` reads)
    <prefix>lease                 zset of leased open runs by lease expiry
    <prefix>ended                 zset of ended runs by end time (what ``purge_ended`` reads)
    <prefix>revision              counter handing out revisions (unique across deletes: no ABA)

Compare-and-set is one Lua script: it writes the document only if the run's ``rev`` is still the one
read (or the run still missing), and updates every index in the same atomic step, so the indexes
never disagree with the documents. ``list``/``count``/``due`` read the indexes (no scan).

Needs a single Redis server (or a primary with replicas); the script touches keys it computes, so
Redis Cluster is not supported.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import redis
from django.core.exceptions import ImproperlyConfigured

from ..engine.errors import StoreError
from ..engine.serialization import dumps
from ..engine.types import WorkflowFilter, WorkflowState, WorkflowStatus
from .base import guarded
from .document import DocumentStore
from .transitions import matches

__all__ = ["RedisStore"]

# KEYS[1] = the run's hash. ARGV: prefix, id, expected rev ("" = must be missing, "*" = any),
# doc ("" = delete), status, type, wait kind, created (us), wake-up (us or ""), lease expiry (us or ""),
# parent workflow id ("" = none: a child run is also in its parent's ``children:<parent>`` zset),
# end time (us, or "" while open: an ended run is in the ``ended`` zset).
_WRITE = """
local key, p, id = KEYS[1], ARGV[1], ARGV[2]
local old = redis.call('HMGET', key, 'rev', 'status', 'type', 'parent')
if ARGV[3] ~= '*' then
  if ARGV[3] == '' then
    if old[1] then return 0 end
  elseif old[1] ~= ARGV[3] then
    return 0
  end
end
if old[2] then redis.call('ZREM', p .. 'status:' .. old[2], id) end
if old[3] then redis.call('ZREM', p .. 'type:' .. old[3], id) end
if old[4] and old[4] ~= '' then redis.call('ZREM', p .. 'children:' .. old[4], id) end
if ARGV[4] == '' then
  redis.call('DEL', key)
  redis.call('ZREM', p .. 'all', id)
  redis.call('ZREM', p .. 'ids', id)
  redis.call('ZREM', p .. 'wake', id)
  redis.call('ZREM', p .. 'lease', id)
  redis.call('ZREM', p .. 'ended', id)
  return 1
end
local rev = redis.call('INCR', p .. 'revision')
redis.call('HSET', key, 'doc', ARGV[4], 'rev', rev, 'status', ARGV[5], 'type', ARGV[6], 'wait', ARGV[7],
           'parent', ARGV[11])
redis.call('ZADD', p .. 'all', ARGV[8], id)
redis.call('ZADD', p .. 'ids', 0, id)
redis.call('ZADD', p .. 'status:' .. ARGV[5], ARGV[8], id)
redis.call('ZADD', p .. 'type:' .. ARGV[6], ARGV[8], id)
if ARGV[9] == '' then redis.call('ZREM', p .. 'wake', id) else redis.call('ZADD', p .. 'wake', ARGV[9], id) end
if ARGV[10] == '' then redis.call('ZREM', p .. 'lease', id) else redis.call('ZADD', p .. 'lease', ARGV[10], id) end
if ARGV[11] ~= '' then redis.call('ZADD', p .. 'children:' .. ARGV[11], ARGV[8], id) end
if ARGV[12] == '' then redis.call('ZREM', p .. 'ended', id) else redis.call('ZADD', p .. 'ended', ARGV[12], id) end
return rev
"""

_BATCH = 200


def _us(value: datetime | None) -> str:
    """A time as integer microseconds since the epoch (exact in a zset's double score)."""
    if value is None:
        return ""
    return str(round(value.timestamp() * 1_000_000))


class RedisStore(DocumentStore):
    """Runs in Redis (redis-py), safe for any number of workers on any number of machines.

    Options:
        url: ``redis://[:password@]host:port/db`` (also ``rediss://``, ``unix://``); default
            ``redis://127.0.0.1:6379/0``. Env ``REDIS_URL`` in the example project.
        key_prefix: prefix of every key, default ``"beluga_workflows:"`` (so one Redis can hold
            several deployments, or the Celery broker's keys beside ours).
        socket_timeout: seconds before a command fails with ``StoreError`` (default 5).
        client: an existing ``redis.Redis`` to use instead of ``url`` (not closed by ``close``).
    """

    backend_name = "redis"
    backend_errors = (redis.RedisError,)
    unreachable_hint = "Start Redis, or point OPTIONS['url'] (env REDIS_URL) at it."

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", key_prefix: str = "beluga_workflows:",
                 socket_timeout: float = 5.0, client: redis.Redis | None = None,
                 **options: Any) -> None:
        super().__init__(url=url, key_prefix=key_prefix, socket_timeout=socket_timeout, **options)
        if options:
            raise ImproperlyConfigured(
                f'BELUGA_WORKFLOWS["STORE"]["OPTIONS"] has unknown option(s) for the redis store: '
                f"{', '.join(sorted(options))}; it takes url, key_prefix, socket_timeout, client")
        if client is None and (not isinstance(url, str)
                               or urlsplit(url).scheme not in ("redis", "rediss", "unix")):
            raise ImproperlyConfigured(
                f'BELUGA_WORKFLOWS["STORE"]["OPTIONS"]["url"] = {url!r} is not a Redis URL '
                f"(redis://host:port/db, rediss://... or unix://...)")
        if not isinstance(key_prefix, str):
            raise ImproperlyConfigured('the redis store\'s "key_prefix" must be a string')
        if not isinstance(socket_timeout, (int, float)) or socket_timeout <= 0:
            raise ImproperlyConfigured('the redis store\'s "socket_timeout" must be a positive number')
        self.url = url
        self.prefix = key_prefix
        self._owns_client = client is None
        # redis-py's pool notices a fork and reconnects in the child: safe under prefork workers.
        self.client = client or redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
            health_check_interval=30)
        self._script = self.client.register_script(_WRITE)

    # -- primitives ----------------------------------------------------------------------------

    def _key(self, workflow_id: str) -> str:
        return f"{self.prefix}run:{workflow_id}"

    def _read(self, workflow_id: str) -> tuple[dict | None, Any]:
        doc, rev = self.client.hmget(self._key(workflow_id), ["doc", "rev"])
        if doc is None:
            return None, ""
        return json.loads(doc), rev.decode()

    def _write(self, workflow_id: str, doc: dict, revision: Any, state: WorkflowState) -> bool:
        open_ = state.is_open
        # A lease without an expiry never expires (as the memory store reads it).
        lease = (_us(state.lease_expires_at) or "+inf") if open_ and state.lease_owner else ""
        return bool(self._script(keys=[self._key(workflow_id)], args=[
            self.prefix, workflow_id, revision, dumps(doc), state.status.value,
            state.workflow_type, state.wait_kind if open_ else "", _us(state.created_at),
            _us(state.wake_at) if open_ else "", lease, state.parent_id,
            "" if open_ else _us(state.ended_at),
        ]))

    def _remove(self, workflow_id: str) -> None:
        self._script(keys=[self._key(workflow_id)],
                     args=[self.prefix, workflow_id, "*", "", "", "", "", "", "", "", "", ""])

    def _remove_at(self, workflow_id: str, revision: Any) -> bool:
        # The write script's delete, at the revision read: it keeps every index consistent.
        return bool(self._script(keys=[self._key(workflow_id)], args=[
            self.prefix, workflow_id, revision or "", "", "", "", "", "", "", "", "", ""]))

    def _documents(self) -> Iterable[dict]:
        return self._docs(m.decode() for m in self.client.zrange(f"{self.prefix}ids", 0, -1))

    def _docs(self, ids: Iterable[str]) -> Iterator[dict]:
        """The documents of ``ids`` in order (those deleted meanwhile skipped), fetched in batches."""
        ids = list(ids)
        for start in range(0, len(ids), _BATCH):
            pipe = self.client.pipeline(transaction=False)
            for workflow_id in ids[start:start + _BATCH]:
                pipe.hget(self._key(workflow_id), "doc")
            for doc in pipe.execute():
                if doc is not None:
                    yield json.loads(doc)

    def ping(self) -> None:
        """Send Redis a ``PING``.

        Raises:
            StoreError: the server at ``url`` does not answer.
        """
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise StoreError(f"redis: cannot reach {self.url}: {exc}") from exc

    # -- listing from the indexes --------------------------------------------------------------

    def _index(self, filter: WorkflowFilter) -> str:
        """The zset that holds (a superset of) the runs ``filter`` asks for."""
        if filter.parent_id:
            return f"{self.prefix}children:{filter.parent_id}"
        if filter.status is not None:
            return f"{self.prefix}status:{WorkflowStatus(filter.status).value}"
        if filter.wait_kind:
            return f"{self.prefix}status:running"
        if filter.workflow_type:
            return f"{self.prefix}type:{filter.workflow_type}"
        return f"{self.prefix}all"

    def _candidates(self, filter: WorkflowFilter) -> list[str]:
        """Ids that may match, newest first."""
        prefix = filter.workflow_id_prefix
        if not prefix:
            return [m.decode() for m in self.client.zrevrange(self._index(filter), 0, -1)]
        # UTF-8 never holds the byte 0xFF, so it bounds every id that starts with the prefix.
        low = prefix.encode()
        ids = self.client.zrangebylex(f"{self.prefix}ids", b"[" + low, b"(" + low + b"\xff")
        if not ids:
            return []
        scores = self.client.zmscore(f"{self.prefix}all", ids)
        ranked = sorted(((s or 0, m) for s, m in zip(scores, ids, strict=True)), reverse=True)
        return [m.decode() for _, m in ranked]

    def _simple(self, filter: WorkflowFilter) -> bool:
        """Whether one index answers ``filter`` exactly (no field to check per run)."""
        given = [filter.status is not None, bool(filter.workflow_type), bool(filter.wait_kind),
                 bool(filter.workflow_id_prefix), bool(filter.parent_id)]
        return sum(given) <= 1 and not filter.wait_kind and not filter.workflow_id_prefix

    def _matching(self, filter: WorkflowFilter) -> Iterator[str]:
        """Ids matching ``filter``, newest first, checked against each run's indexed fields."""
        candidates = self._candidates(filter)
        for start in range(0, len(candidates), _BATCH):
            batch = candidates[start:start + _BATCH]
            pipe = self.client.pipeline(transaction=False)
            for workflow_id in batch:
                pipe.hmget(self._key(workflow_id), ["status", "type", "wait", "parent"])
            for workflow_id, (status, type_, wait, parent) in zip(batch, pipe.execute(),
                                                                  strict=True):
                if status is None:
                    continue  # deleted meanwhile
                state = WorkflowState(workflow_id=workflow_id, run_id="", status=status.decode(),
                                      workflow_type=type_.decode(), wait_kind=wait.decode(),
                                      parent_id=(parent or b"").decode())
                if matches(state, filter):
                    yield workflow_id

    def _decoded(self, docs: Iterable[dict]) -> list[WorkflowState]:
        return [self._decode(d.get("WorkflowID", "?"), d, with_history=False).state for d in docs]

    @guarded("list")
    def list(self, filter: WorkflowFilter | None = None) -> list[WorkflowState]:
        """Read the ids from the narrowest index, newest first, then their documents in pipelined
        batches; a filter one index cannot answer is checked against each run's indexed fields.
        """
        filter = filter or WorkflowFilter()
        offset = max(filter.offset, 0)
        stop = offset + filter.limit - 1 if filter.limit > 0 else -1
        if self._simple(filter):
            ids = [m.decode() for m in self.client.zrevrange(self._index(filter), offset, stop)]
        else:
            ids = []
            for n, workflow_id in enumerate(self._matching(filter)):
                if n >= offset:
                    ids.append(workflow_id)
                if filter.limit > 0 and len(ids) >= filter.limit:
                    break
        return self._decoded(self._docs(ids))

    @guarded("count")
    def count(self, filter: WorkflowFilter | None = None) -> int:
        """``ZCARD`` of one index when it answers ``filter`` exactly; else a pass over its ids
        checking each run's indexed fields (no document is read).
        """
        filter = filter or WorkflowFilter()
        if self._simple(filter):
            return self.client.zcard(self._index(filter))
        return sum(1 for _ in self._matching(filter))

    @guarded("count_children")
    def count_children(self, workflow_ids: Iterable[str]) -> dict[str, int]:
        """One pipelined ``ZCARD`` of each id's ``children:`` index."""
        ids = list(dict.fromkeys(i for i in workflow_ids if i))
        pipe = self.client.pipeline(transaction=False)
        for workflow_id in ids:
            pipe.zcard(f"{self.prefix}children:{workflow_id}")
        return {i: n for i, n in zip(ids, pipe.execute() if ids else (), strict=True) if n}

    @guarded("count_by_status")
    def count_by_status(self) -> dict[str, int]:
        """One pipelined ``ZCARD`` per status index."""
        pipe = self.client.pipeline(transaction=False)
        for status in WorkflowStatus:
            pipe.zcard(f"{self.prefix}status:{status.value}")
        return {s.value: n for s, n in zip(WorkflowStatus, pipe.execute(), strict=True)}

    @guarded("due")
    def due(self, now: datetime, limit: int = 500) -> list[str]:
        """Ids from the ``wake`` index whose score passed, in batches, kept when the ``lease`` index
        has no unexpired lease for them; soonest wake-up first.
        """
        if limit <= 0:
            return []
        now_us = int(_us(now))
        due: list[str] = []
        offset = 0
        while len(due) < limit:
            batch = self.client.zrangebyscore(f"{self.prefix}wake", "-inf", now_us,
                                              start=offset, num=max(limit, _BATCH))
            if not batch:
                break
            offset += len(batch)
            leases = self.client.zmscore(f"{self.prefix}lease", batch)
            for member, lease in zip(batch, leases, strict=True):
                if lease is None or lease <= now_us:
                    due.append(member.decode())
        return due[:limit]

    def _ended(self, before: datetime, limit: int, status: WorkflowStatus | None = None,
               workflow_type: str | None = None) -> list[str]:
        """Ids from the ``ended`` index with end times before ``before``, oldest first; with a
        filter, read in batches and checked against each run's indexed fields (as ``_matching``
        does for ``list``) until ``limit`` match (no document is read)."""
        key, high = f"{self.prefix}ended", f"({_us(before)}"
        if status is None and workflow_type is None:
            page = {"start": 0, "num": limit} if limit > 0 else {}
            return [m.decode() for m in self.client.zrangebyscore(key, "-inf", high, **page)]
        found: list[str] = []
        offset = 0
        while limit <= 0 or len(found) < limit:
            batch = [m.decode() for m in self.client.zrangebyscore(key, "-inf", high,
                                                                   start=offset, num=_BATCH)]
            if not batch:
                break
            offset += len(batch)
            pipe = self.client.pipeline(transaction=False)
            for workflow_id in batch:
                pipe.hmget(self._key(workflow_id), ["status", "type"])
            for workflow_id, (status_, type_) in zip(batch, pipe.execute(), strict=True):
                if status_ is None:
                    continue  # deleted meanwhile
                if ((status is None or status_.decode() == status.value)
                        and (workflow_type is None or type_.decode() == workflow_type)):
                    found.append(workflow_id)
        return found[:limit] if limit > 0 else found

    @guarded("count_ended")
    def count_ended(self, before: datetime, *, status: WorkflowStatus | str | None = None,
                    workflow_type: str | None = None) -> int:
        """One ``ZCOUNT`` of the ``ended`` index; with a filter, the ids ``_ended`` finds."""
        if status is not None or workflow_type is not None:
            return super().count_ended(before, status=status, workflow_type=workflow_type)
        return self.client.zcount(f"{self.prefix}ended", "-inf", f"({_us(before)}")

    def close(self) -> None:
        """Close the client made from ``url``; a client given in ``OPTIONS`` is left open."""
        if self._owns_client:
            self.client.close()
