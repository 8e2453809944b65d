"""Refuse request bodies over the upload limit before Django reads them."""

import json
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from common.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE

PAGES_PREFIX = "/dashboard/"


def size_in_words(size_bytes: int) -> str:
    """52428800 -> '50 MB' (the binary megabyte people's file browsers show)."""
    megabytes = size_bytes / (1024 * 1024)
    if megabytes >= 1:
        return f"{megabytes:,.0f} MB" if megabytes == int(megabytes) else f"{megabytes:,.1f} MB"
    return f"{size_bytes / 1024:,.0f} KB"


class BodySizeLimitMiddleware:
    # Multipart framing adds a little to the file itself; leave room for it.
    OVERHEAD_BYTES = 64 * 1024

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.UPLOAD_MAX_BYTES + self.OVERHEAD_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit and request.path.startswith(PAGES_PREFIX):
            # A page's form (no script) is told in words, on a page like the others.
            context = {"limit": size_in_words(settings.UPLOAD_MAX_BYTES), "back": request.path}
            return HttpResponse(render_to_string("413.html", context), status=413)
        if declared > limit:
            body = {
                "type": PROBLEM_TYPE_BASE + "body_too_large",
                "title": "Content Too Large",
                "status": 413,
                "code": "body_too_large",
                "detail": f"The request body is {declared} bytes; the limit is {limit} bytes.",
            }
            return HttpResponse(json.dumps(body), status=413, content_type=PROBLEM_CONTENT_TYPE)
        return self.get_response(request)
