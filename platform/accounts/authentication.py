from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.models import ApiKey, User
from accounts.services import api_key_authenticate

KEY_REFUSED = "The API key is invalid, expired or revoked."


def presented_secret(meta: Mapping[str, Any]) -> str | None:
    """The API key secret a request presents (`Authorization: Bearer …`, else `X-Api-Key: …`); None when
    it presents none (no such header, or another Authorization scheme)."""
    header = meta.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == ApiKeyAuthentication.keyword.lower() else None
    return meta.get("HTTP_X_API_KEY", "").strip() or None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer trb_…` (or `X-Api-Key: trb_…`). request.auth is the ApiKey row."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        secret = presented_secret(request.META)
        if secret is None:
            return None
        api_key = api_key_authenticate(secret=secret)
        if api_key is None:
            raise exceptions.AuthenticationFailed(KEY_REFUSED)
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "trb_ API key"}
