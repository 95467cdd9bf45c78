"""A Celery app on kombu's in-memory transport (a real transport, not a mock), to read sent tasks.

``MEMORY_CELERY`` configures beluga_workflows with the memory store and the celery executor
sending through this app; ``drain(queue)`` takes every message waiting in a queue.
"""

from __future__ import annotations

from celery import Celery

QUEUE = "beluga-unit"
memory_app = Celery("beluga-unit-tests", broker="memory://", set_as_current=False)
memory_app.conf.update(task_default_queue=QUEUE, broker_connection_retry_on_startup=True)

MEMORY_CELERY = {
    "STORE": {"BACKEND": "memory", "OPTIONS": {}},
    "EXECUTOR": {"BACKEND": "celery",
                 "OPTIONS": {"app": "tests.celery.memory_broker.memory_app"}},
    "HOOKS": [],
}


def drain(queue: str = QUEUE) -> list:
    """Every message waiting in ``queue`` (removed from it)."""
    messages = []
    with memory_app.connection_for_read() as conn:
        simple = conn.SimpleQueue(queue, no_ack=True)
        try:
            while True:
                messages.append(simple.get(block=False))
        except simple.Empty:
            pass
        finally:
            simple.close()
    return messages
