import pytest

from access import services as access_services
from media import index


@pytest.fixture(autouse=True)
def fresh_index_and_caches():
    """Each test starts with an empty matching index and no remembered grants or prices (ids are reused
    after a rolled-back test)."""
    index.reset()
    access_services.forget_caches()
    yield
    index.reset()
    access_services.forget_caches()
