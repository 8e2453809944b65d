from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.core.cache import caches
from rest_framework.test import APIClient

from access import services as access_services
from accounts.models import User
from contracts.anvil import AnvilNode, AnvilNotInstalled
from matching import index


def pytest_configure(config: pytest.Config) -> None:
    """TRIBUTE_TEST_CLOCK_SHIFT_DAYS=N runs the whole session N days from now (.ci/run's SQLite pass: 400),
    so a test that depends on today's date fails today rather than on the day it would have expired.

    The clock moves for every thread of the test process and keeps ticking; the monotonic clock and sleeps
    are left alone. Debian's faketime (0.9.10) cannot do this for the suite: with the monotonic clock moved,
    every timed wait (a lock, an event or a join with a timeout) waits the whole shift; with it left alone
    (FAKETIME_DONT_FAKE_MONOTONIC), every time.sleep fails with EINVAL. Processes the tests start (gunicorn,
    a Celery worker, Chromium) and native code reading the system clock itself (the c2pa signer) keep the
    real date."""
    shift = os.environ.get("TRIBUTE_TEST_CLOCK_SHIFT_DAYS", "").strip()
    if shift:
        time_machine.travel(datetime.now(UTC) + timedelta(days=int(shift))).start()


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> Iterator[None]:
    """Rate-limit counters live in the cache: each test starts with none."""
    for alias in ("default", "ratelimit"):
        caches[alias].clear()
    yield
    for alias in ("default", "ratelimit"):
        caches[alias].clear()


@pytest.fixture(autouse=True)
def fresh_process_caches() -> Iterator[None]:
    """Ids are reused after a rolled-back test: the per-process matching index and the access path's
    caches (grants, prices) must not carry one test's objects into the next, whichever folder it is in."""
    index.reset()
    access_services.forget_caches()
    yield
    index.reset()
    access_services.forget_caches()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def as_user() -> Callable[[User], APIClient]:
    """An API client logged in (session) as the given user."""

    def make(user: User) -> APIClient:
        client = APIClient()
        client.force_authenticate(user=user)
        return client

    return make


@pytest.fixture
def with_key() -> Callable[[str], APIClient]:
    def make(secret: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client

    return make


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[AnvilNode]:
    """An anvil node on 127.0.0.1 for tests marked `anvil`.

    pyproject's addopts deselect the `anvil` marker; `pytest -m anvil` (as .ci/run does) selects them, and
    then they need anvil installed (`./dev setup`): they fail, never skip, without it.
    """
    try:
        node = AnvilNode()
    except AnvilNotInstalled as error:
        pytest.fail(f"anvil tests were selected, but {error}", pytrace=False)
    node.start()
    yield node
    node.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `postgres` need PostgreSQL: on SQLite they are deselected (reported as such), not
    skipped and not passed."""
    if "postgresql" in str(settings.DATABASES["default"]["ENGINE"]):
        return
    deselected = [item for item in items if item.get_closest_marker("postgres") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.get_closest_marker("postgres") is None]
