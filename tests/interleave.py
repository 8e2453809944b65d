"""Making two database sessions interleave in a chosen order, for tests of locks on PostgreSQL.

A test runs the first writer in a thread that stops inside its transaction (before commit), starts the
second, and waits until the second either waits for a lock or has finished; then it lets the first
commit. Which one "wins" is fixed by the test, never by timing, and nothing here measures time: the wait
is for a state of the database, bounded only so that a broken test ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction

_GIVE_UP_S = 60.0


class Session(threading.Thread):
    """`work` in its own thread and database connection; its result or exception kept for the test."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as error:  # handed to the test, which asserts on it
            self.error = error
        finally:
            connection.close()


def sessions_waiting_for_locks() -> int:
    """Sessions of this test database that wait for a lock (others may share the server)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


def wait_until_blocked_or_done(session: Session) -> bool:
    """Wait until `session` waits for a lock (True) or has ended (False)."""
    stop = threading.Event()
    waited = 0.0
    while waited < _GIVE_UP_S:
        if not session.is_alive():
            return False
        if sessions_waiting_for_locks():
            return True
        stop.wait(0.01)
        waited += 0.01
    raise AssertionError("the second session neither waited for a lock nor finished")


def paused_inside_transaction(work: Callable[[], Any]) -> tuple[Session, threading.Event]:
    """Start `work` in a transaction that stays open (its locks held) until the returned event is set."""
    inside, release = threading.Event(), threading.Event()

    def run() -> Any:
        with transaction.atomic():
            result = work()
            inside.set()
            release.wait(_GIVE_UP_S)
            return result

    session = Session(run)
    session.start()
    if not inside.wait(_GIVE_UP_S):
        session.join()
        raise AssertionError(f"the first session did not reach its pause: {session.error!r}")
    return session, release
