"""The lease keeper: one thread per process that renews the leases of activations still working.

A worker's claim on a run (its lease) lasts ``lease_seconds`` from its last write. Every checkpoint
extends it, but an activation may spend longer than that between two checkpoints (a slow activity,
an in-place retry wait); without renewal its lease would expire under a live worker and the
recovery sweep would start a second one on the same run. The keeper looks at every lease at least
three times per lease period and renews each with less than two thirds of its time left. A failed
renewal is logged and tried again on the next look; a refused one (another worker took the run)
leaves the activation to find out at its next write.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .context import RunInfo

__all__ = ["LeaseHolder", "LeaseKeeper", "lease_keeper"]

logger = logging.getLogger("beluga_workflows.runner")


class LeaseHolder(Protocol):
    """An activation as the keeper sees it: a claim on one run that it can renew."""

    @property
    def info(self) -> RunInfo:
        """The run the lease is on."""
        ...

    @property
    def lease_seconds(self) -> float:
        """How long one renewal extends the lease."""
        ...

    lease_until: datetime | None

    def now(self) -> datetime:
        """The current time, from the holder's clock."""
        ...

    def renew_lease(self, until: datetime) -> bool:
        """Extend the lease to ``until``; ``False`` when the holder no longer owns the run.

        Raises:
            Exception: the store failed (the keeper logs it and tries again later).
        """
        ...


class LeaseKeeper:
    """Renews the leases of the holders added to it, from one daemon thread started on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[int, LeaseHolder] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, holder: LeaseHolder) -> None:
        """Keep ``holder``'s lease alive until ``remove``; starts the thread if it is not running."""
        with self._lock:
            self._active[id(holder)] = holder
            self._wake.set()  # re-read the period: this lease may be the shortest
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="beluga-lease-keeper",
                                                daemon=True)
                self._thread.start()

    def remove(self, holder: LeaseHolder) -> None:
        """Stop renewing ``holder``'s lease (it has released or lost the run)."""
        with self._lock:
            self._active.pop(id(holder), None)

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._period())
            self._wake.clear()
            with self._lock:
                active = list(self._active.values())
            for holder in active:
                _renew_if_due(holder)

    def _period(self) -> float:
        # Look at least three times per lease: a lease shorter than this loop's period would
        # expire under a live worker and let the recovery sweep start a second one.
        with self._lock:
            period = min((h.lease_seconds / 3 for h in self._active.values()), default=1.0)
        return min(max(period, 0.01), 1.0)


def _renew_if_due(holder: LeaseHolder) -> None:
    now = holder.now()
    lease = holder.lease_seconds
    if holder.lease_until is None or (holder.lease_until - now).total_seconds() < lease * 2 / 3:
        until = now + timedelta(seconds=lease)
        try:
            if holder.renew_lease(until):
                holder.lease_until = until
        except Exception:
            logger.exception("renewing the lease of %s failed", holder.info.workflow_id)


# The process's keeper (one thread for every activation in the process).
lease_keeper = LeaseKeeper()
