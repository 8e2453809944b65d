"""config/gunicorn_worker.py in a real gunicorn (two workers with one thread each, as in production):
kept-alive connections go to a worker with a free thread and are closed every
MAX_REQUESTS_PER_CONNECTION requests, so they spread by load."""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Iterator

import pytest

from config.gunicorn_worker import MAX_REQUESTS_PER_CONNECTION
from tests.security.live import Gunicorn


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    # The worker class named on the command line (it overrides the sync workers Gunicorn starts by
    # default), not the production settings file, whose start-up hook loads Django's views.
    options = ("--worker-class", "config.gunicorn_worker.BalancingThreadWorker", "--threads", "1")
    server = Gunicorn(dict(os.environ), workers=2, options=options, app="tests.gunicorn_probe_app")
    try:
        yield server.port
    finally:
        server.stop()


def _get(connection: http.client.HTTPConnection, path: str = "/") -> tuple[str, str | None]:
    connection.request("GET", path)
    response = connection.getresponse()
    return response.read().decode(), response.getheader("Connection")


def test_a_connection_is_closed_after_its_request_quota(server: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    answers = [_get(connection) for _ in range(MAX_REQUESTS_PER_CONNECTION)]
    assert len({pid for pid, _ in answers}) == 1  # one connection, one worker
    assert "close" not in {header for _, header in answers[:-1]}
    assert answers[-1][1] == "close"
    assert connection.sock is None  # http.client closed its end as told
    connection.close()


def test_a_new_connection_goes_to_the_worker_that_is_not_busy(server: int) -> None:
    # Each round keeps one worker busy with a slow request and opens a new connection: it must be
    # served at once by the other worker. A worker accepting whatever its thread is doing would take
    # it half of the time and answer it only after the slow request.
    for _ in range(6):
        busy = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
        busy.request("GET", "/?1")
        time.sleep(0.2)  # the slow request is being served
        started = time.monotonic()
        other = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
        other_pid, _ = _get(other)
        waited = time.monotonic() - started
        busy_pid = busy.getresponse().read().decode()
        other.close()
        busy.close()
        assert other_pid != busy_pid
        assert waited < 0.7
