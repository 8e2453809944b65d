"""config/gunicorn.py: the production server settings bench/access.py and ./dev up start gunicorn with."""

import gc
import sys

from config import gunicorn


def test_workers_keep_connections_open_with_one_thread_each() -> None:
    assert gunicorn.worker_class == "config.gunicorn_worker.BalancingThreadWorker"
    assert gunicorn.threads == 1
    assert gunicorn.keepalive > 0


def test_a_started_worker_has_imported_every_view_and_frozen_what_it_loaded() -> None:
    assert gc.get_freeze_count() == 0
    try:
        gunicorn.post_worker_init(object())
        assert "access.apis" in sys.modules
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
