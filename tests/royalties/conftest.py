"""Royalties test helpers. Tests marked `postgres` need PostgreSQL (DATABASE_URL): on SQLite they are
deselected, not skipped, so a SQLite run reports them as not applicable rather than as passing."""

from __future__ import annotations

import pytest
from django.conf import settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs PostgreSQL; deselected when the database is SQLite")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "postgresql" in str(settings.DATABASES["default"]["ENGINE"]):
        return
    deselected = [item for item in items if item.get_closest_marker("postgres") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.get_closest_marker("postgres") is None]
