from __future__ import annotations

from collections.abc import Iterator

import pytest

from media import index


@pytest.fixture
def fresh_index() -> Iterator[None]:
    """A matching index with nothing from other tests in it."""
    index.reset()
    yield
    index.reset()
