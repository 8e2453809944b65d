from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from accounts.models import ApiKey, Role, User


class KeyScope(BasePermission):
    """Requests made with an API key need the view's scope: `read` for safe methods, `write` otherwise,
    unless the view names its own `required_scope`. Session requests are not limited by scopes."""

    message = "This API key lacks the scope this operation needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, ApiKey):
            return True
        scope = getattr(view, "required_scope", None) or (
            "read" if request.method in SAFE_METHODS else "write"
        )
        return request.auth.has_scope(scope)


class SessionOnly(BasePermission):
    """Managing keys needs a logged-in person, so a leaked key cannot mint more keys."""

    message = "API keys are managed from a logged-in session, not with an API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        return not isinstance(request.auth, ApiKey)


class IsCreator(BasePermission):
    message = "Only creators may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return bool(request.user and request.user.is_authenticated and request.user.role == Role.CREATOR)


def authenticated_user(request: Request) -> User:
    """The request's user, for views whose permissions already required authentication."""
    user = request.user
    if not isinstance(user, User):
        raise NotAuthenticated()
    return user
