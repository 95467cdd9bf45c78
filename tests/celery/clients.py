"""Client processes the integration tests start next to the workers.

``python -m tests.celery.clients signal IDS_FILE SEED``: send each workflow of IDS_FILE its three
``go`` signals (in order per workflow), the workflows interleaved at random with random pauses.

``python -m tests.celery.clients run START_AT ID...``: at wall-clock time START_AT + k seconds, call
``executor.run(ID_k)`` in this process, printing one JSON line per activation.

``python -m tests.celery.clients paid SCHEDULE_FILE``: for each line ``<id> <wall-clock time>`` of
SCHEDULE_FILE, send at that time the ``celery-tests/paid`` event of that id (id ``paid-<id>``).

Both run under ``tests.celery.worker_settings`` with the environment the tests give.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time


def send_signals(ids_file: str, seed: str) -> None:
    from beluga_workflows import Signal, get_executor

    rng = random.Random(seed)
    executor = get_executor()
    with open(ids_file) as f:
        pending = {line.strip(): 0 for line in f if line.strip()}
    while pending:
        workflow_id = rng.choice(list(pending))
        k = pending[workflow_id]
        executor.signal(workflow_id, Signal(name="go", payload={"wf": workflow_id, "k": k},
                                            sender_id=f"pid-{os.getpid()}"))
        if k == 2:
            del pending[workflow_id]
        else:
            pending[workflow_id] = k + 1
        if rng.random() < 0.2:
            time.sleep(rng.random() * 0.01)


def run_at(start_at: float, ids: list[str]) -> None:
    from beluga_workflows import get_executor

    executor = get_executor()
    executor.store.load("warm-up", with_history=False)  # connect before the race starts
    for k, workflow_id in enumerate(ids):
        while time.time() < start_at + k:
            time.sleep(0.0005)
        result = executor.run(workflow_id)
        print(json.dumps({
            "workflow_id": workflow_id, "claimed": result.claimed,
            "status": result.status.value if result.status else None, "pid": os.getpid(),
        }), flush=True)


def send_paid(schedule_file: str) -> None:
    from beluga_workflows import Event, get_executor

    executor = get_executor()
    executor.store.count_events()  # connect before the race starts
    with open(schedule_file) as f:
        schedule = sorted((float(at), workflow_id)
                          for workflow_id, at in (line.split() for line in f if line.strip()))
    for at, workflow_id in schedule:
        while (left := at - time.time()) > 0:
            time.sleep(min(left, 0.01))
        executor.send_event(Event("celery-tests/paid", {"order_id": workflow_id},
                                  id=f"paid-{workflow_id}"))


def main(argv: list[str]) -> None:
    import django

    django.setup()
    command, *args = argv
    if command == "signal":
        send_signals(args[0], args[1])
    elif command == "run":
        run_at(float(args[0]), args[1:])
    elif command == "paid":
        send_paid(args[0])
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
