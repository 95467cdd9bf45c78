"""The benchmark's workflows and baseline tasks as a Django app, so worker processes load them."""

import os

from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "bench"
    label = "beluga_bench"

    def ready(self) -> None:
        from celery.signals import worker_ready

        from .workflows import mark_worker_ready

        worker_ready.connect(mark_worker_ready, weak=False)
        if os.environ.get("BENCH_COUNT_STATEMENTS") == "1":
            from .workflows import count_statements

            count_statements()
