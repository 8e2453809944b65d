"""RFC 9457 problem details for every API error, each with a stable machine-readable `code`."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://tribute.invalid/problems/"


class ApiError(exceptions.APIException):
    """An error raised by a service with a stable code; the API turns it into problem+json.

    Services raise the subclasses below (or ApiError with an explicit status) so the HTTP mapping stays out
    of business logic while the code a client matches on never changes.
    """

    status_code: int = status.HTTP_400_BAD_REQUEST
    default_code = "bad_request"
    default_detail = "The request is not valid."

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        status_code: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail=detail or self.default_detail, code=code or self.default_code)
        if status_code is not None:
            self.status_code = status_code
        self.problem_code = code or self.default_code
        self.extra = extra or {}


class Conflict(ApiError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "The request conflicts with the current state."


class Forbidden(ApiError):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "forbidden"
    default_detail = "You may not do this."


class NotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND
    default_code = "not_found"
    default_detail = "Not found."


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
}

_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ValidationError: "validation_error",
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def problem_body(
    status_code: int, code: str, detail: str, *, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The problem document (RFC 9457) for plain Django views that cannot answer with DRF's Response."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": _TITLES.get(status_code, "Error"),
        "status": status_code,
        "code": code,
        "detail": detail,
    }
    if extra:
        body.update(extra)
    return body


def problem_response(
    status_code: int, code: str, detail: str, *, extra: dict[str, Any] | None = None
) -> Response:
    body = problem_body(status_code, code, detail, extra=extra)
    return Response(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)


def _flatten(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_flatten(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    return str(detail)


class ValueOutOfRange(ApiError):
    default_code = "value_out_of_range"
    default_detail = "A number or text in the request is outside what can be stored (integers to 2^63 - 1)."


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # A number past what the database stores (SQLite raises OverflowError, PostgreSQL a DataError) is the
    # client's mistake: 400, whichever field or path segment carried it. The statement that raised it was
    # refused, so nothing was written.
    if isinstance(exc, OverflowError | DataError):
        exc = ValueOutOfRange()
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)

    # Imported here: rest_framework.views loads the authentication classes, which import this module.
    from rest_framework.views import exception_handler

    response = exception_handler(exc, context)
    if response is None:
        return None
    assert isinstance(exc, exceptions.APIException)
    if isinstance(exc, ApiError):
        problem = problem_response(exc.status_code, exc.problem_code, str(exc.detail), extra=exc.extra)
    else:
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
        extra = {"errors": exc.detail} if isinstance(exc, exceptions.ValidationError) else None
        if isinstance(exc, exceptions.ValidationError):
            detail = "The request has invalid fields: " + _flatten(exc.detail)
        else:
            detail = str(exc.detail)
        problem = problem_response(response.status_code, code, detail, extra=extra)
    for header, value in response.items():
        if header.lower() in {"www-authenticate", "retry-after", "allow"}:
            problem[header] = value
    return problem
