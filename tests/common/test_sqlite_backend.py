"""The SQLite backend queues writers on a file lock and checkpoints the WAL outside it."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from django.db.utils import ConnectionHandler

from common.sqlite import base


@pytest.fixture(autouse=True)
def _scratch_databases(django_db_blocker):
    # These tests open their own SQLite files, not the test database pytest-django guards.
    with django_db_blocker.unblock():
        yield


def _connection(path: Path):
    options = {"transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    return ConnectionHandler({"default": {"ENGINE": "common.sqlite", "NAME": str(path), "OPTIONS": options}})[
        "default"
    ]


def _begin(connection) -> None:
    # What transaction.atomic does on entering its outermost block on SQLite.
    connection.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)


def _end(connection, *, commit: bool) -> None:
    connection.commit() if commit else connection.rollback()
    connection.set_autocommit(True)


def _lock_is_free(path: Path) -> bool:
    fd = os.open(f"{path}-writers.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing the descriptor releases a lock taken through it
    return True


def test_a_write_transaction_holds_the_writer_lock_until_it_commits_or_rolls_back(tmp_path) -> None:
    path = tmp_path / "db.sqlite3"
    connection = _connection(path)
    connection.cursor().execute("CREATE TABLE t (x INTEGER)")
    for commit in (True, False):
        _begin(connection)
        connection.cursor().execute("INSERT INTO t VALUES (1)")
        assert not _lock_is_free(path)
        _end(connection, commit=commit)
        assert _lock_is_free(path)
    assert connection.cursor().execute("SELECT count(*) FROM t").fetchone() == (1,)
    connection.close()


def test_a_second_writer_waits_on_the_lock_and_runs_after_the_first_commits(tmp_path) -> None:
    path = tmp_path / "db.sqlite3"
    first = _connection(path)
    first.cursor().execute("CREATE TABLE t (who TEXT)")
    _begin(first)
    first.cursor().execute("INSERT INTO t VALUES ('first')")
    started = threading.Event()
    errors: list[BaseException] = []

    def second_writer() -> None:
        second = _connection(path)
        try:
            started.set()
            _begin(second)  # blocks on the file lock while the first transaction is open
            second.cursor().execute("INSERT INTO t VALUES ('second')")
            _end(second, commit=True)
        except BaseException as error:  # reported to the main thread
            errors.append(error)
        finally:
            second.close()

    thread = threading.Thread(target=second_writer)
    thread.start()
    started.wait()
    thread.join(timeout=0.3)
    assert thread.is_alive(), "the second writer did not wait for the first"
    _end(first, commit=True)
    thread.join(timeout=10)
    assert not thread.is_alive() and not errors
    rows = first.cursor().execute("SELECT who FROM t ORDER BY rowid").fetchall()
    assert rows == [("first",), ("second",)]
    first.close()


def test_a_failed_begin_releases_the_lock(tmp_path, monkeypatch) -> None:
    path = tmp_path / "db.sqlite3"
    connection = _connection(path)
    connection.ensure_connection()

    def refuse(self) -> None:
        raise RuntimeError("BEGIN refused")

    monkeypatch.setattr(base.base.DatabaseWrapper, "_start_transaction_under_autocommit", refuse)
    with pytest.raises(RuntimeError):
        connection._start_transaction_under_autocommit()
    assert _lock_is_free(path)
    connection.close()


def test_the_wal_is_checkpointed_in_the_background_and_stays_bounded(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(base, "CHECKPOINT_EVERY_COMMITS", 4)
    path = tmp_path / "db.sqlite3"
    connection = _connection(path)
    cursor = connection.cursor()
    assert cursor.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    cursor.execute("CREATE TABLE t (x BLOB)")
    largest = 0
    for _ in range(200):  # about 1.6 MB written, 25 times the threshold
        _begin(connection)
        connection.cursor().execute("INSERT INTO t VALUES (randomblob(8000))")
        _end(connection, commit=True)
        largest = max(largest, os.stat(f"{path}-wal").st_size)
        # The checkpoint runs in the background; waiting for it keeps the bound below deterministic.
        assert base.checkpointer(str(path)).idle.wait(timeout=10)
    assert largest < 4 * 4 * 12 << 10  # four checkpoints' worth of 12-KiB commits
    assert connection.cursor().execute("SELECT count(*) FROM t").fetchone() == (200,)
    connection.close()


def _fill_wal(connection, commits: int) -> None:
    for _ in range(commits):
        _begin(connection)
        connection.cursor().execute("INSERT INTO t VALUES (randomblob(8000))")
        _end(connection, commit=True)


def _frames(connection) -> int:
    _, frames, _ = connection.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return frames


def _checkpoint_in_a_thread(path: Path) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def run() -> None:
        connection = sqlite3.connect(path, timeout=20)
        try:
            base.checkpointer(str(path)).checkpoint(connection)
            done.set()
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def test_a_checkpoint_of_a_large_wal_holds_the_writers_back_and_the_wal_starts_again(
    tmp_path, monkeypatch
) -> None:
    """Under writes that never pause, frames added while a checkpoint runs keep the WAL from starting again.
    Past CATCH_UP_WAL_BYTES the checkpointer copies the last frames holding the writers' lock, so the next
    writer finds every frame copied and starts the WAL from the beginning. Driven step by step: a writer
    holds its transaction open while the checkpoint runs, as a writer in a steady stream would."""
    monkeypatch.setattr(base, "CHECKPOINT_EVERY_COMMITS", 10**9)  # no background checkpoint in this test
    monkeypatch.setattr(base, "CHECKPOINT_WAL_BYTES", 1 << 40)
    monkeypatch.setattr(base, "CATCH_UP_WAL_BYTES", 512 << 10)
    path = tmp_path / "db.sqlite3"
    connection = _connection(path)
    connection.cursor().execute("CREATE TABLE t (x BLOB)")
    _fill_wal(connection, 100)  # about 1.2 MB of frames, past the catch-up size
    _begin(connection)  # a writer in the middle of its transaction holds the writers' lock
    connection.cursor().execute("INSERT INTO t VALUES (randomblob(8000))")

    thread, done = _checkpoint_in_a_thread(path)
    thread.join(timeout=0.3)
    assert thread.is_alive() and not done.is_set(), "the catch-up checkpoint did not wait for the writer"
    _end(connection, commit=True)  # frames the checkpoint's passive passes did not see
    thread.join(timeout=10)
    assert done.is_set()

    _fill_wal(connection, 1)  # the next writer finds every frame copied and starts the WAL again
    assert _frames(connection) <= 4
    assert connection.cursor().execute("SELECT count(*) FROM t").fetchone() == (101 + 1,)
    connection.close()


def test_a_checkpoint_of_a_small_wal_never_waits_for_the_writers(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(base, "CHECKPOINT_EVERY_COMMITS", 10**9)
    monkeypatch.setattr(base, "CATCH_UP_WAL_BYTES", 512 << 10)
    path = tmp_path / "db.sqlite3"
    connection = _connection(path)
    connection.cursor().execute("CREATE TABLE t (x BLOB)")
    _fill_wal(connection, 10)  # about 120 KB
    _begin(connection)
    connection.cursor().execute("INSERT INTO t VALUES (1)")
    thread, done = _checkpoint_in_a_thread(path)
    thread.join(timeout=10)
    assert done.is_set(), "the checkpoint of a small WAL waited for the writer"
    _end(connection, commit=True)
    connection.close()


def test_a_wal_that_starts_again_is_reused_not_cut_back(tmp_path) -> None:
    """Cutting a large WAL back took tens of milliseconds inside a writer's commit, with the other
    writers queued behind it."""
    path = tmp_path / "db.sqlite3"
    connection = _connection(path)
    connection.cursor().execute("CREATE TABLE t (x BLOB)")
    for _ in range(50):
        _begin(connection)
        connection.cursor().execute("INSERT INTO t VALUES (randomblob(8000))")
        _end(connection, commit=True)
    assert base.checkpointer(str(path)).idle.wait(timeout=10)
    file_size = os.stat(f"{path}-wal").st_size
    assert file_size > 50 * 8000
    _, _, copied = connection.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert copied * 4096 > 50 * 8000

    _begin(connection)  # this writer finds every frame copied and starts the WAL again
    connection.cursor().execute("INSERT INTO t VALUES (1)")
    _end(connection, commit=True)

    _, frames, _ = connection.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert frames <= 2
    assert os.stat(f"{path}-wal").st_size == file_size
    connection.close()
