"""SQLite with writers queued on an OS file lock and the WAL checkpointed outside it.

SQLite lets one writer at a time hold the database. A second writer that finds it taken sleeps in its
busy handler (1, 2, 5, 10, 15, 20, 25 ... ms) and tries again, so under concurrent writes a request can
wait tens of milliseconds for a lock that was free after one. Here every write transaction first takes
an exclusive flock on a file beside the database: the kernel wakes the next waiter when the holder
commits, so writers from every process and thread follow each other without sleeping. SQLite's own
locking and busy timeout stay underneath; the file lock only orders who asks first.

The committing writer also used to run SQLite's automatic checkpoint (copying the WAL back into the
database, with two fsyncs that can take tens of milliseconds) while every other writer waited for the
lock. Automatic checkpoints are off; every CHECKPOINT_EVERY_COMMITS commits of a connection (or when the
WAL file has grown by CHECKPOINT_WAL_BYTES) the writer wakes a background thread of its process, which
runs a passive checkpoint: no request waits for it and it never blocks the writers.

Under a steady stream of writes that alone would let the WAL grow without end: it starts again from the
beginning only when a writer finds every frame copied, and new frames arrive while a checkpoint runs. So
when the WAL holds more than CATCH_UP_WAL_BYTES the checkpointer copies the last frames while holding the
writers' lock (a pause of one checkpoint's two fsyncs), and the next writer starts the WAL again.

The WAL file is not cut back when it starts again (no journal_size_limit): cutting 70 MB took 16 to
46 ms here, inside the commit of the writer that started it again, with every other writer queued
behind it. The file keeps the size it reached, about CATCH_UP_WAL_BYTES under a steady load.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from typing import Any

from django.db.backends.sqlite3 import base

CHECKPOINT_WAL_BYTES = 4 << 20  # SQLite's own default checkpoints at 1,000 pages of 4 KiB
CHECKPOINT_EVERY_COMMITS = 64
CATCH_UP_WAL_BYTES = 64 << 20
_FRAME_HEADER_BYTES = 24

logger = logging.getLogger(__name__)


class _Checkpointer:
    """A daemon thread, one per process and database file, that checkpoints the WAL when asked."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.asked = threading.Event()
        self.idle = threading.Event()
        self.idle.set()
        self.thread: threading.Thread | None = None
        self.starting = threading.Lock()

    def ask(self) -> None:
        self.idle.clear()
        self.asked.set()
        with self.starting:  # two threads asking at once start one checkpointer
            if self.thread is None or not self.thread.is_alive():  # also after a fork, which keeps no threads
                self.thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        connection = sqlite3.connect(self.path, timeout=20)
        try:
            while True:
                self.asked.wait()
                self.asked.clear()
                try:
                    self._checkpoint(connection)
                except sqlite3.Error:
                    logger.exception("WAL checkpoint of %s failed", self.path)
                if not self.asked.is_set():
                    self.idle.set()
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        # The bulk of it, beside the writers; it answers how many frames the WAL holds.
        _, frames, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        (page_size,) = connection.execute("PRAGMA page_size").fetchone()
        if frames * (page_size + _FRAME_HEADER_BYTES) < CATCH_UP_WAL_BYTES:
            return
        # Writers kept adding frames while it ran, so none found the WAL copied in full and started it
        # again: copy what came meanwhile, then the little left with the writers held back, and the next
        # writer starts the WAL from the beginning.
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        descriptor = _open_writers_lock(self.path)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            os.close(descriptor)  # also releases the lock


def _wal_file_bytes(database_file: str) -> int:
    try:
        return os.stat(f"{database_file}-wal").st_size
    except OSError:
        return 0


def _open_writers_lock(database_file: str) -> int:
    return os.open(f"{database_file}-writers.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


_checkpointers: dict[str, _Checkpointer] = {}
_checkpointers_lock = threading.Lock()


def checkpointer(path: str) -> _Checkpointer:
    with _checkpointers_lock:
        return _checkpointers.setdefault(path, _Checkpointer(path))


class DatabaseWrapper(base.DatabaseWrapper):
    _database_file: str | None = None  # None for an in-memory database: no other process can write it
    _writer_lock_fd: int | None = None
    _writer_lock_held = False
    _wal_checked_bytes = 0  # the WAL file's size when this connection last asked for a checkpoint
    _commits_unchecked = 0

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        name = str(self.settings_dict["NAME"])
        self._database_file = name if name and not self.is_in_memory_db() else None
        if self._database_file is not None:
            connection.execute("PRAGMA wal_autocheckpoint=0")
        return connection

    def _start_transaction_under_autocommit(self) -> None:
        self._acquire_writer_lock()
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]  # private in django-stubs
        except BaseException:
            self._release_writer_lock()
            raise

    def _commit(self) -> None:
        try:
            super()._commit()  # type: ignore[misc]  # private in django-stubs
        finally:
            self._release_writer_lock()
        self._checkpoint_if_due()

    def _rollback(self) -> None:
        try:
            super()._rollback()  # type: ignore[misc]  # private in django-stubs
        finally:
            self._release_writer_lock()

    def _close(self) -> None:
        try:
            super()._close()  # type: ignore[misc]  # private in django-stubs
        finally:
            self._release_writer_lock()
            if self._writer_lock_fd is not None:
                os.close(self._writer_lock_fd)
                self._writer_lock_fd = None

    def _acquire_writer_lock(self) -> None:
        if self._database_file is None:
            return
        if self._writer_lock_fd is None:
            self._writer_lock_fd = _open_writers_lock(self._database_file)
        fcntl.flock(self._writer_lock_fd, fcntl.LOCK_EX)
        self._writer_lock_held = True

    def _release_writer_lock(self) -> None:
        if self._writer_lock_held and self._writer_lock_fd is not None:
            self._writer_lock_held = False
            fcntl.flock(self._writer_lock_fd, fcntl.LOCK_UN)

    def _checkpoint_if_due(self) -> None:
        if self._database_file is None:
            return
        self._commits_unchecked += 1
        size = _wal_file_bytes(self._database_file)
        if self._commits_unchecked >= CHECKPOINT_EVERY_COMMITS or size >= self._wal_checked_bytes + (
            CHECKPOINT_WAL_BYTES
        ):
            self._commits_unchecked = 0
            self._wal_checked_bytes = size
            checkpointer(self._database_file).ask()
