"""gunicorn's threaded worker, spreading kept-alive connections by load (config/gunicorn.py uses it).

A threaded worker accepts connections on its main thread whatever its request threads are doing, and a
kept-alive connection then stays with that worker for good. Under load the connections ended up spread
by chance (one run: 72, 22 and 11 connections over three workers), and the most loaded worker, busy
nearly all the time, kept its clients waiting while the others idled. This worker

- stops accepting while all its threads are busy, so a new connection goes to a worker with one free
  (or waits in the listen queue until one is), and
- answers the MAX_REQUESTS_PER_CONNECTION-th request of a connection with `Connection: close`, so a
  long-lived client connects again now and then and lands where there is room. HTTP clients reconnect
  on their own when a response says so; it costs them a TCP handshake every that many requests.
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.gthread import ThreadWorker

MAX_REQUESTS_PER_CONNECTION = 100


class BalancingThreadWorker(ThreadWorker):
    in_flight = 0  # requests handed to the thread pool and not yet finished (main thread only)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and self.alive and self.in_flight < self.cfg.threads)

    def enqueue_req(self, conn: Any) -> None:
        self.in_flight += 1
        self.set_accept_enabled(self._accepting)
        super().enqueue_req(conn)

    def finish_request(self, conn: Any, fs: Any) -> None:
        self.in_flight -= 1
        super().finish_request(conn, fs)
        self.set_accept_enabled(self.nr_conns < self.worker_connections)

    def handle_request(self, req: Any, conn: Any) -> bool:
        conn.requests_served = getattr(conn, "requests_served", 0) + 1
        if conn.requests_served >= MAX_REQUESTS_PER_CONNECTION:
            req.must_close = True  # the response says `Connection: close`; the worker then closes it
        return bool(super().handle_request(req, conn))
