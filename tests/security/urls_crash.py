"""The site's URLs plus two views that crash, for the error-page tests (never part of the site)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import handler404, handler500
from config.urls import urlpatterns as site_urlpatterns

__all__ = ["handler404", "handler500", "urlpatterns"]


def crash(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the page crashed while it held a request")


class CrashApi(APIView):
    def get(self, request: Request) -> Response:
        raise RuntimeError("the API crashed while it held a request")


urlpatterns = [
    path("crash/", crash),
    path("api/v1/crash", CrashApi.as_view()),
    *site_urlpatterns,
]
