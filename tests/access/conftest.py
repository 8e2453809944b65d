import pytest

from access import services


@pytest.fixture(autouse=True)
def fresh_process_caches():
    """Ids are reused after a rolled-back test; the access path's per-process caches must not carry over."""
    services.forget_caches()
    yield
    services.forget_caches()
