"""config/gunicorn_worker.py: kept-alive connections are closed every MAX_REQUESTS_PER_CONNECTION requests
(in a real gunicorn, two workers with one thread each, as in production), and a worker with no free thread
leaves a new connection to the others (its decisions driven step by step on its own clock, so no test
depends on which process the machine's scheduler runs first; bench/access.py measures the spread)."""

from __future__ import annotations

import http.client
import os
import socket
from collections.abc import Iterator
from concurrent.futures import Future
from types import SimpleNamespace

import pytest

from config.gunicorn_worker import ACCEPT_DELAY_S, MAX_REQUESTS_PER_CONNECTION, BalancingThreadWorker
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


class SteppedWorker(BalancingThreadWorker):
    """The worker's accept decisions driven step by step: its own clock, one listening socket, a poller
    that records what it is asked, and a thread pool that keeps every request in flight."""

    def __init__(self, threads: int = 1) -> None:  # gunicorn's worker set-up is not needed here
        self.cfg = SimpleNamespace(threads=threads)
        self.alive = True
        self.moment = 100.0
        self.nr_conns = 0
        self._accepting = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.sockets = [self.listener]
        self.poller = RecordingPoller()
        self.tpool = SimpleNamespace(submit=self.keep_in_flight)
        self.method_queue = SimpleNamespace(defer=lambda *args: None)
        self.sockets_opened: list[socket.socket] = []

    def keep_in_flight(self, handle: object, conn: SimpleNamespace) -> Future[None]:
        self.sockets_opened.append(conn.sock)
        return Future()

    def clock(self) -> float:
        return self.moment

    def waiting_connection(self) -> socket.socket:
        client = socket.create_connection(self.listener.getsockname())
        self.sockets_opened.append(client)
        return client

    def close(self) -> None:
        for opened in self.sockets_opened:
            opened.close()
        self.listener.close()


class RecordingPoller:
    def __init__(self) -> None:
        self.registered: set[object] = set()
        self.timeouts: list[float] = []

    def register(self, fileobj: object, events: int, data: object) -> None:
        self.registered.add(fileobj)

    def unregister(self, fileobj: object) -> None:
        self.registered.discard(fileobj)

    def select(self, timeout: float) -> list[object]:
        self.timeouts.append(timeout)
        return []


@pytest.fixture
def worker() -> Iterator[SteppedWorker]:
    stepped = SteppedWorker()
    stepped.set_accept_enabled(True)
    try:
        yield stepped
    finally:
        stepped.close()


def test_a_worker_with_a_free_thread_takes_a_new_connection_at_once(worker: SteppedWorker) -> None:
    worker.waiting_connection()

    worker.accept(worker.listener)

    assert (worker.nr_conns, worker.in_flight, worker.deferred_until) == (1, 1, None)
    assert worker.listener in worker.poller.registered


def test_a_busy_worker_leaves_a_new_connection_to_the_others_for_the_delay(worker: SteppedWorker) -> None:
    worker.in_flight = 1  # its only thread is serving a request
    worker.waiting_connection()

    worker.accept(worker.listener)

    assert (worker.nr_conns, worker.in_flight) == (0, 1)  # not taken
    assert worker.deferred_until == 100.0 + ACCEPT_DELAY_S
    assert worker.listener not in worker.poller.registered  # stopped listening, so another worker takes it
    worker.moment += ACCEPT_DELAY_S / 2
    worker.set_accept_enabled(True)  # the event loop asks to listen again: not before the delay is over
    assert worker.listener not in worker.poller.registered
    worker.wait_for_and_dispatch_events(1.0)  # wakes up when the delay ends, not a second later
    assert worker.poller.timeouts == [pytest.approx(ACCEPT_DELAY_S / 2)]
    worker.moment += ACCEPT_DELAY_S / 2
    worker.set_accept_enabled(True)
    assert worker.listener in worker.poller.registered


def test_a_connection_still_waiting_after_the_delay_is_taken_by_a_busy_worker(worker: SteppedWorker) -> None:
    # Every worker is busy: nobody else took it, so waiting longer would only starve the client.
    worker.in_flight = 1
    worker.waiting_connection()
    worker.accept(worker.listener)
    worker.moment += ACCEPT_DELAY_S

    worker.accept(worker.listener)

    assert (worker.nr_conns, worker.in_flight, worker.deferred_until) == (1, 2, None)


def test_a_deferral_that_ran_out_long_ago_starts_a_new_one(worker: SteppedWorker) -> None:
    worker.in_flight = 1
    worker.waiting_connection()
    worker.accept(worker.listener)
    worker.moment += 3 * ACCEPT_DELAY_S  # a new connection, long after the last deferral ended

    worker.accept(worker.listener)

    assert (worker.nr_conns, worker.deferred_until) == (0, worker.moment + ACCEPT_DELAY_S)
