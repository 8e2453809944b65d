"""How gunicorn serves Tribute: `gunicorn -c python:config.gunicorn config.wsgi` (./dev up and
bench/access.py start it so). Command-line options and GUNICORN_CMD_ARGS override these.

Threaded workers with one thread each keep a client's connection open between requests, so an API
client that reuses its connection (as the vendors' SDKs and HTTP libraries do) pays neither a TCP
handshake nor gunicorn's wait for the client to close after every call: on the metered access call
that raised what two cores sustain by a third or more (docs/access.md). One thread per worker, because
a second thread in the same process only competes for the interpreter's lock; the processes give the
parallelism. The worker class is gunicorn's threaded worker made to spread those connections by load
(config/gunicorn_worker.py). gunicorn still expects a buffering proxy in front for slow clients and TLS.
"""

import os

# One worker per core and one more, so a core is not left idle while a worker waits on the database
# (3 on the 2-core benchmark machine; 6 was slower there on PostgreSQL).
workers = int(os.environ.get("WEB_CONCURRENCY", str((os.cpu_count() or 1) + 1)))
worker_class = "config.gunicorn_worker.BalancingThreadWorker"
threads = 1
keepalive = 30  # seconds an idle client connection stays open


def post_worker_init(worker: object) -> None:
    """Import every view now rather than on a worker's first request, then put everything loaded so far
    out of the cyclic garbage collector's reach. A full collection over a loaded worker took 100 to 170 ms
    here, several times a minute under load, and every request queued on that worker waited for it; what
    was loaded at start lives as long as the worker anyway."""
    import gc

    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (the import is the point)
    gc.collect()
    gc.freeze()
