"""Reading file responses in tests."""

from __future__ import annotations

from django.core.signals import request_finished
from django.db import close_old_connections


def close(response) -> None:
    """Close a response (and the file it streams) without closing the test's database connection, as
    Django's own test client does for streamed responses."""
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def content(response) -> bytes:
    data = b"".join(response.streaming_content)
    close(response)
    return data
