"""Error pages for requests that never reach a DRF view: under /api/ they are problem+json too.

A URL under /api/ that matches no route (`/api/v1/works/abc`) or a crash outside DRF would otherwise
answer with Django's HTML page, which API clients cannot parse and the schema does not describe. The
500 body never carries the exception: details go to the log only.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.views import defaults

from common.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE

API_PREFIX = "/api/"


def _problem(status: int, title: str, code: str, detail: str) -> HttpResponse:
    body = {"type": PROBLEM_TYPE_BASE + code, "title": title, "status": status, "code": code}
    body["detail"] = detail
    return HttpResponse(json.dumps(body), status=status, content_type=PROBLEM_CONTENT_TYPE)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return _problem(404, "Not Found", "not_found", "No API operation or object at this address.")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return _problem(500, "Internal Server Error", "server_error", "Something went wrong on our side.")
    return defaults.server_error(request)
