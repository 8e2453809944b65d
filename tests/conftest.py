from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from django.core.cache import caches
from rest_framework.test import APIClient

from accounts.models import User
from contracts.anvil import AnvilNode, AnvilNotInstalled


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> Iterator[None]:
    """Rate-limit counters live in the cache: each test starts with none."""
    for alias in ("default", "ratelimit"):
        caches[alias].clear()
    yield
    for alias in ("default", "ratelimit"):
        caches[alias].clear()


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
