"""common.postgresql: the connection health check without a round trip, and prepared hot statements."""

import time

import pytest
from django.db import connection, connections
from django.db.backends.postgresql import base as django_postgresql

from common import rows

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def other():
    """A second connection to the test database, outside the test's transaction."""
    wrapper = connections.create_connection("default")
    wrapper.settings_dict["CONN_HEALTH_CHECKS"] = True
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()


@pytest.fixture
def round_trips(monkeypatch):
    """Counts the checks that fell back to Django's own `SELECT 1`."""
    calls = []
    original = django_postgresql.DatabaseWrapper.is_usable

    def counted(self):
        calls.append(self)
        return original(self)

    monkeypatch.setattr(django_postgresql.DatabaseWrapper, "is_usable", counted)
    return calls


def _terminate(wrapper) -> None:
    pid = wrapper.connection.info.backend_pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert cursor.fetchone() == (True,)
    for _ in range(100):  # the session ends a moment after the call returns
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # the test's transaction caches the view
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone() == (0,):
                return
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} still running")


def test_a_healthy_idle_connection_passes_the_check_without_a_query(other, round_trips) -> None:
    assert other.is_usable()
    assert round_trips == []


def test_a_terminated_session_fails_the_check_and_the_next_request_reconnects(other, round_trips) -> None:
    old_pid = other.connection.info.backend_pid
    _terminate(other)

    assert not other.is_usable()
    other.health_check_done = False  # as at the start of a request
    other.close_if_health_check_failed()
    with other.cursor() as cursor:  # no error reaches the request: it runs on a new session
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != old_pid


def test_a_connection_inside_a_transaction_is_checked_with_a_query(other, round_trips) -> None:
    other.set_autocommit(False)
    with other.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert other.is_usable()
    assert round_trips == [other]
    other.rollback()
    other.set_autocommit(True)


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_a_hot_statement_is_prepared_once_per_connection() -> None:
    sql = "SELECT %s::bigint + %s::bigint"
    connection.ensure_connection()
    connection.connection.prepare_threshold = 0  # as the settings configure it
    for n in range(3):
        with rows.prepared_cursor() as cursor:
            cursor.execute(sql, [n, 1])
            assert cursor.fetchone() == (n + 1,)
    assert [s for s in _prepared_statements() if "::bigint + $2" in s] == ["SELECT $1::bigint + $2::bigint"]


def test_prepared_statements_can_be_turned_off_for_a_pooling_proxy() -> None:
    connection.ensure_connection()
    connection.connection.prepare_threshold = None  # DB_PREPARED_STATEMENTS=0
    try:
        with rows.prepared_cursor() as cursor:
            cursor.execute("SELECT %s::bigint * 7", [6])
            assert cursor.fetchone() == (42,)
        assert not [s for s in _prepared_statements() if "* 7" in s]
    finally:
        connection.connection.prepare_threshold = 0
