"""A WSGI app for tests/test_gunicorn_worker.py: answers with the serving process's id, after sleeping
for the number of seconds given as the query string (none by default)."""

import os
import time
from collections.abc import Callable, Iterable
from typing import Any


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    pause = environ.get("QUERY_STRING") or "0"
    time.sleep(float(pause))
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
