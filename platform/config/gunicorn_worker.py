"""gunicorn's threaded worker, spreading kept-alive connections by load (config/gunicorn.py uses it).

A threaded worker accepts connections on its main thread whatever its request threads are doing, and a
kept-alive connection then stays with that worker for good. Under load the connections ended up spread
by chance (one run: 72, 22 and 11 connections over three workers), and the most loaded worker, busy
nearly all the time, kept its clients waiting while the others idled. This worker

- leaves a new connection to a worker with a free thread: a worker whose threads are all busy takes it
  only if it is still waiting ACCEPT_DELAY_S later (every worker busy), and
- answers the MAX_REQUESTS_PER_CONNECTION-th request of a connection with `Connection: close`, so a
  long-lived client connects again now and then and lands where there is room. HTTP clients reconnect
  on their own when a response says so; it costs them a TCP handshake every that many requests.
"""

from __future__ import annotations

import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

MAX_REQUESTS_PER_CONNECTION = 100
ACCEPT_DELAY_S = 0.005  # a few requests' time: long enough for an idle worker to take the connection


class BalancingThreadWorker(ThreadWorker):
    clock = staticmethod(time.monotonic)  # a test steps its own clock through the decisions below
    in_flight = 0  # requests handed to the thread pool and not yet finished (main thread only)
    deferred_until: float | None = None  # a pending connection is left to the others until then

    def accept(self, listener: Any) -> None:
        now = self.clock()
        if self.in_flight >= self.cfg.threads:
            due = self.deferred_until
            if due is None or not due <= now < due + ACCEPT_DELAY_S:
                # Busy: stop listening for a moment, so a worker with a free thread takes the connection.
                self.deferred_until = now + ACCEPT_DELAY_S
                super().set_accept_enabled(False)
                return
            # Still there after the delay (every worker is busy): take it.
        self.deferred_until = None
        super().accept(listener)

    def set_accept_enabled(self, enabled: bool) -> None:
        if self.deferred_until is not None and self.clock() < self.deferred_until:
            enabled = False
        super().set_accept_enabled(enabled and self.alive)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if self.deferred_until is not None:
            remaining = self.deferred_until - self.clock()
            if remaining > 0:  # wake up in time to listen again
                timeout = min(timeout, remaining)
        super().wait_for_and_dispatch_events(timeout)

    def enqueue_req(self, conn: Any) -> None:
        self.in_flight += 1
        super().enqueue_req(conn)

    def finish_request(self, conn: Any, fs: Any) -> None:
        self.in_flight -= 1
        super().finish_request(conn, fs)

    def handle_request(self, req: Any, conn: Any) -> bool:
        conn.requests_served = getattr(conn, "requests_served", 0) + 1
        if conn.requests_served >= MAX_REQUESTS_PER_CONNECTION:
            req.must_close = True  # the response says `Connection: close`; the worker then closes it
        return bool(super().handle_request(req, conn))
