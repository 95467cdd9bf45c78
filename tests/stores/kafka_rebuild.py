"""A process that rebuilds the kafka store's view from its topic and lists every run.

``python -m tests.stores.kafka_rebuild OPTIONS_JSON``: build a ``kafka`` store with
``OPTIONS_JSON``, time the rebuild of its view (the first read consumes the topic from offset 0)
and a ``list()`` of every run, and print one JSON line: ``listed``, ``running``, ``first``,
``last``, ``rebuild_s``, ``list_s``, ``view_mb`` (Python memory the view holds), ``doc_bytes``
(the documents' own size) and ``rss_mb`` (the process's resident memory grown by the rebuild).
"""

from __future__ import annotations

import json
import sys
import time


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str]) -> None:
    import django

    django.setup()
    from beluga_workflows.stores import create_store

    store = create_store({"BACKEND": "kafka", "OPTIONS": json.loads(argv[0])})
    rss = rss_mb()
    started = time.monotonic()
    view = store._caught_up()
    rebuilt = time.monotonic()
    grown = rss_mb() - rss
    listed = store.list()
    done = time.monotonic()
    # The view's own Python objects: the dict, its entries and their documents.
    view_mb = (sys.getsizeof(view.runs) + sum(
        sys.getsizeof(k) + sys.getsizeof(e) + sys.getsizeof(e.value) + sys.getsizeof(e.version)
        for k, e in view.runs.items())) / 2**20
    print(json.dumps({
        "listed": len(listed), "running": sum(s.status.value == "running" for s in listed),
        "first": listed[0].workflow_id, "last": listed[-1].workflow_id,
        "rebuild_s": rebuilt - started, "list_s": done - rebuilt, "view_mb": view_mb,
        "doc_bytes": sum(len(e.value or b"") for e in view.runs.values()), "rss_mb": grown,
    }), flush=True)
    store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
