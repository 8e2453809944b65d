"""OpenAPI post-processing: document the problem+json errors every operation can answer.

Views declare their success responses; the errors come from shared machinery (authentication, permissions,
validation, the exception handler, the body-size middleware), so they are added here, once, in the shape
common.problems produces. A client generated from the schema then knows every status it may receive.
"""

from __future__ import annotations

from typing import Any

from common.problems import PROBLEM_CONTENT_TYPE

PROBLEM_COMPONENT = "Problem"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem details document; `code` is stable, `detail` is for people.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "errors": {"description": "Per-field messages (validation errors only)."},
    },
    "required": ["type", "title", "status", "code", "detail"],
    "additionalProperties": True,
}

_DESCRIPTIONS = {
    "400": "The request is malformed or has invalid fields.",
    "401": "No valid credentials: an API key (`Authorization: Bearer trb_…`) or a session.",
    "402": "The balance is not enough; the body says what it costs and how to pay.",
    "403": "Authenticated, but not allowed (missing key scope, wrong role, missing CSRF token).",
    "404": "Not found, or not visible to the caller (another party's object answers 404).",
    "405": "The method is not allowed here.",
    "406": "The requested representation cannot be produced.",
    "409": "Conflicts with the current state (an idempotency key reused with another body, a race lost).",
    "413": "The request body or the uploaded media is over a size limit.",
    "415": "The request's content type is not accepted.",
    "429": "Too many requests.",
}
_ALWAYS = ("400", "401", "402", "403", "404", "405", "406", "429")
_WITH_BODY = ("409", "413", "415")


def _problem(status: str) -> dict[str, Any]:
    return {
        "description": _DESCRIPTIONS[status],
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": f"#/components/schemas/{PROBLEM_COMPONENT}"}}},
    }


def problem_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry: adds the error responses to every operation."""
    result.setdefault("components", {}).setdefault("schemas", {})[PROBLEM_COMPONENT] = PROBLEM_SCHEMA
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if method not in {"get", "put", "post", "patch", "delete"}:
                continue
            statuses = list(_ALWAYS)
            if method != "get":
                statuses += _WITH_BODY
            responses = operation.setdefault("responses", {})
            for status in statuses:
                responses.setdefault(status, _problem(status))
    return result
