"""A real Celery worker for the at-least-once tests: `python -m tests.security.celery_worker QUEUE`.

The project's Celery app and tasks, consuming QUEUE on the broker named by CELERY_BROKER_URL, with a short
visibility timeout (SECURITY_VISIBILITY_TIMEOUT_S) so a message whose worker died is delivered again within
seconds instead of an hour. Two test-only knobs, read from the environment:
- SECURITY_SETTLE_CHUNK: settle in chunks of this many items (so a run spans several transactions);
- SECURITY_STALL_MARKER: after the first chunk commits, write this file and stall, so the test can kill
  the worker at a known point between two committed chunks.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

import django

django.setup()

from config.celery import app  # noqa: E402
from royalties import settlement  # noqa: E402


def _configure() -> None:
    app.conf.broker_transport_options = {
        "visibility_timeout": float(os.environ.get("SECURITY_VISIBILITY_TIMEOUT_S", "3")),
        # look for abandoned messages every second, not every 10 x 10 s
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
    chunk = os.environ.get("SECURITY_SETTLE_CHUNK")
    if chunk:
        assert settlement.revenue_settle.__kwdefaults__ is not None
        settlement.revenue_settle.__kwdefaults__["chunk_size"] = int(chunk)
    marker = os.environ.get("SECURITY_STALL_MARKER")
    if marker:
        settle_chunk = settlement._settle_chunk

        def stalling(
            *, limit: int, excluded: set[int] | None = None, only: Sequence[int] | None = None
        ) -> int:
            # committed when it returns (its own atomic block)
            count = settle_chunk(limit=limit, excluded=excluded, only=only)
            if count:
                Path(marker).write_text(str(count))
                time.sleep(600)
            return count

        settlement._settle_chunk = stalling


if __name__ == "__main__":
    queue = sys.argv[1]
    _configure()
    app.worker_main(
        [
            "worker",
            "--queues",
            queue,
            "--hostname",
            f"{queue}-{os.getpid()}@127.0.0.1",
            "--concurrency",
            os.environ.get("SECURITY_CONCURRENCY", "2"),
            "--pool",
            "prefork",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )
