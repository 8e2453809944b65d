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
from collections.abc import Callable, Sequence
from typing import Any

from django.db.backends.sqlite3 import base, operations

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
                    self.checkpoint(connection)
                except sqlite3.Error:
                    logger.exception("WAL checkpoint of %s failed", self.path)
                if not self.asked.is_set():
                    self.idle.set()
        finally:
            connection.close()

    def checkpoint(self, connection: sqlite3.Connection) -> None:
        """One checkpoint of the WAL on `connection`, as the thread runs it when asked."""
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


# Checks a write transaction must pass before it commits: SQLite has no deferred constraints, so a rule
# over several rows (a journal transaction's entries sum to zero) is checked here. A trigger reports each
# row it guards through the SQL function `tribute_written(kind, id)`, which answers 0 outside a
# transaction (the trigger then refuses the row: an autocommitted row would escape the check); at commit,
# the check registered for each kind written is given the ids and answers a problem or None.
CommitCheck = Callable[[Any, list[int]], str | None]
_commit_checks: dict[str, CommitCheck] = {}


def register_commit_check(kind: str, check: CommitCheck) -> None:
    """Check the rows of `kind` that triggers reported, before every commit that wrote some."""
    _commit_checks[kind] = check


_checkpointers: dict[str, _Checkpointer] = {}
_checkpointers_lock = threading.Lock()


def checkpointer(path: str) -> _Checkpointer:
    with _checkpointers_lock:
        return _checkpointers.setdefault(path, _Checkpointer(path))


class DatabaseOperations(operations.DatabaseOperations):
    def sql_flush(
        self, style: Any, tables: Sequence[str], *, reset_sequences: bool = False, allow_cascade: bool = False
    ) -> list[str]:
        """Emptying tables (`manage.py flush`, the test runner between transactional tests) lifts their
        triggers for the flush: a guard refusing DELETE (the ledger's) would refuse the flush itself. The
        triggers are dropped and made again, from their own SQL, in the flush's transaction."""
        statements = super().sql_flush(
            style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )
        if not statements:
            return statements
        placeholders = ", ".join("%s" for _ in tables)
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "  # noqa: S608 (placeholders)
                f"AND tbl_name IN ({placeholders}) ORDER BY name",
                list(tables),
            )
            triggers = cursor.fetchall()
        return [f'DROP TRIGGER "{name}"' for name, _ in triggers] + statements + [sql for _, sql in triggers]


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    _database_file: str | None = None  # None for an in-memory database: no other process can write it
    _writer_lock_fd: int | None = None
    _writer_lock_held = False
    _wal_checked_bytes = 0  # the WAL file's size when this connection last asked for a checkpoint
    _commits_unchecked = 0
    _written: dict[str, set[int]] | None = None  # rows reported by triggers in the open transaction

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        self._written = {}
        written = self._written

        def note_written(kind: str, ident: int) -> int:
            if not connection.in_transaction:
                return 0
            written.setdefault(kind, set()).add(ident)
            return 1

        connection.create_function("tribute_written", 2, note_written)
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
        self._check_before_commit()  # a refusal leaves the transaction open: atomic() then rolls it back
        try:
            super()._commit()  # type: ignore[misc]  # private in django-stubs
        finally:
            self._release_writer_lock()
        self._checkpoint_if_due()

    def _check_before_commit(self) -> None:
        if not self._written:
            return
        written = {kind: sorted(ids) for kind, ids in self._written.items() if ids}
        self._written.clear()
        with self.wrap_database_errors:
            cursor = self.connection.cursor()
            try:
                for kind, ids in written.items():
                    check = _commit_checks.get(kind)
                    problem = check(cursor, ids) if check is not None else f"no commit check for {kind!r}"
                    if problem is not None:
                        raise sqlite3.IntegrityError(problem)
            finally:
                cursor.close()

    def _rollback(self) -> None:
        if self._written:
            self._written.clear()
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
