"""A process that sends signals through its own store instance (the multi-process store tests).

``python -m tests.stores.signal_sender BACKEND OPTIONS_JSON WORKFLOW_ID SENDER COUNT START_AT``:
build the store ``BACKEND`` (an alias) with ``OPTIONS_JSON``, wait until wall-clock ``START_AT``
(so the senders race), then send ``COUNT`` signals ``{"sender": SENDER, "n": n}`` to WORKFLOW_ID and
print the inbox ids the store gave them, one JSON list on one line.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> None:
    import django

    django.setup()
    from beluga_workflows.stores import create_store
    from beluga_workflows.types import Signal, utcnow

    backend, options, workflow_id, sender, count, start_at = argv
    store = create_store({"BACKEND": backend, "OPTIONS": json.loads(options)})
    store.load(workflow_id, with_history=False)  # connect before the race starts
    while time.time() < float(start_at):
        time.sleep(0.001)
    ids = [store.add_signal(workflow_id, Signal("item", {"sender": int(sender), "n": n}),
                            utcnow()).id
           for n in range(int(count))]
    store.close()
    print(json.dumps(ids), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
