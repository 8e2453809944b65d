"""Rate limits: login throttling, API quotas per key and per organisation, and daily quotas per operation.

Counting is django-ratelimit's (fixed windows of cache counters, `add` then atomic `incr`), in the Django
cache named by RATELIMIT_USE_CACHE: Redis in production (CACHE_URL), the process's local memory on the
embedded default. The limits themselves are settings (RATE_LIMITS) and are listed in docs/security.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from accounts.models import ApiKey, User
from common.problems import ApiError


@dataclass(frozen=True)
class Usage:
    """Where one counter stands after a request: its limit, what is left and when the window ends."""

    scope: str
    limit: int
    count: int
    reset_s: int
    final_tier: bool = True  # the scope's longest window: filling it is a lockout, not a slow-down

    @property
    def limited(self) -> bool:
        return self.count > self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    @property
    def retry_after_s(self) -> int:
        return max(1, self.reset_s)


class RateLimited(Exception):
    """A limit is reached; `retry_after_s` says when the next attempt may succeed."""

    def __init__(self, usage: Usage) -> None:
        super().__init__(f"rate limit {usage.scope} reached")
        self.usage = usage

    @property
    def retry_after_s(self) -> int:
        return self.usage.retry_after_s


def _constant(key: str) -> Callable[[str, HttpRequest], str]:
    """django-ratelimit asks a callable for the key; ours is known before the call."""
    return lambda _group, _request: key


def rates(scope: str) -> Sequence[str]:
    """The rates of a scope ("5/m", "20/h"...); several rates make tiers (a progressive slow-down)."""
    configured = settings.RATE_LIMITS.get(scope, ())
    return [configured] if isinstance(configured, str) else list(configured)


def _plain(request: HttpRequest | Request) -> HttpRequest:
    return request._request if isinstance(request, Request) else request


def count(
    request: HttpRequest | Request, *, scope: str, key: str, increment: bool = True, amount: int = 1
) -> Usage | None:
    """Count `amount` events of `scope` for `key` in every tier of the scope's rates; the tightest tier's
    usage, or None when the scope has no limit."""
    plain = _plain(request)
    tightest: Usage | None = None
    scope_rates = rates(scope)
    for index, rate in enumerate(scope_rates):
        raw: dict[str, Any] | None = None
        for _ in range(amount if increment else 1):
            raw = get_usage(
                plain, group=f"tribute.{scope}", key=_constant(key), rate=rate, increment=increment
            )
        if raw is None:
            continue
        usage = Usage(
            scope=scope,
            limit=int(raw["limit"]),
            count=int(raw["count"]),
            reset_s=int(raw["time_left"]),
            final_tier=index == len(scope_rates) - 1,
        )
        if tightest is None or (usage.limited, -usage.remaining, usage.reset_s) > (
            tightest.limited,
            -tightest.remaining,
            tightest.reset_s,
        ):
            tightest = usage
    return tightest


def peek(request: HttpRequest | Request, *, scope: str, key: str) -> Usage | None:
    return count(request, scope=scope, key=key, increment=False)


def client_ip(request: HttpRequest | Request) -> str:
    """The caller's address. Behind a proxy, set RATELIMIT_TRUSTED_PROXY_HEADER (e.g. X-Forwarded-For) and
    the proxy's last hop is used; otherwise REMOTE_ADDR."""
    plain = _plain(request)
    header = settings.RATELIMIT_TRUSTED_PROXY_HEADER
    if header:
        forwarded = plain.META.get("HTTP_" + header.upper().replace("-", "_"), "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1]
    return str(plain.META.get("REMOTE_ADDR", ""))


def note(request: HttpRequest | Request, usage: Usage | None) -> None:
    """Keep the tightest usage of this request for the RateLimit headers (RateLimitHeadersMiddleware)."""
    if usage is None:
        return
    plain = _plain(request)
    kept: Usage | None = getattr(plain, "rate_limit_usage", None)
    if kept is None or (usage.limited, -usage.remaining) > (kept.limited, -kept.remaining):
        plain.rate_limit_usage = usage  # type: ignore[attr-defined]


def api_usage(request: HttpRequest | Request, *, user: User | None, api_key: ApiKey | None) -> Usage | None:
    """Count one API request against the caller's quotas: its key and the key's organisation, its session's
    user, or its address when anonymous. Returns the tightest usage (limited or not)."""
    usages: list[Usage | None] = []
    if api_key is not None:
        usages.append(count(request, scope="api_key", key=f"key:{api_key.pk}"))
        if api_key.organisation_id is not None:
            usages.append(count(request, scope="api_organisation", key=f"org:{api_key.organisation_id}"))
    elif user is not None:
        usages.append(count(request, scope="api_user", key=f"user:{user.pk}"))
    else:
        usages.append(count(request, scope="api_anonymous", key=f"ip:{client_ip(request)}"))
    tightest: Usage | None = None
    for usage in usages:
        note(request, usage)
        if usage is not None and (
            tightest is None or (usage.limited, -usage.remaining) > (tightest.limited, -tightest.remaining)
        ):
            tightest = usage
    return tightest


def quota_owner(*, user: User, api_key: ApiKey | None) -> str:
    """Daily operation quotas belong to the key's organisation when there is one, else to the user."""
    if api_key is not None and api_key.organisation_id is not None:
        return f"org:{api_key.organisation_id}"
    return f"user:{user.pk}"


def quota_consume(
    request: HttpRequest | Request, *, scope: str, user: User, api_key: ApiKey | None = None, amount: int = 1
) -> None:
    """Take `amount` from a daily quota (uploads, traces, outputs, invitations); RateLimited when it would
    go over, in which case nothing is taken."""
    owner = quota_owner(user=user, api_key=api_key)
    before = peek(request, scope=scope, key=owner)
    if before is not None and before.count + amount > before.limit:
        usage = Usage(scope=scope, limit=before.limit, count=before.count + amount, reset_s=before.reset_s)
        note(request, usage)
        raise RateLimited(usage)
    note(request, count(request, scope=scope, key=owner, amount=amount))


class ApiQuotaThrottle(BaseThrottle):
    """Every API request counts against the caller's per-minute quotas (api_usage)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        user = request.user if isinstance(request.user, User) else None
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        usage = api_usage(request, user=user, api_key=api_key)
        self._usage = usage
        return usage is None or not usage.limited

    def wait(self) -> float | None:
        return max(1, self._usage.reset_s) if self._usage is not None else None


class OperationQuotaThrottle(BaseThrottle):
    """Views naming a `quota_scope` count each write against that daily quota of the caller."""

    def allow_request(self, request: Request, view: Any) -> bool:
        scope = getattr(view, "quota_scope", None)
        self._usage: Usage | None = None
        if (
            scope is None
            or request.method in ("GET", "HEAD", "OPTIONS")
            or not isinstance(request.user, User)
        ):
            return True
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        try:
            quota_consume(request, scope=scope, user=request.user, api_key=api_key)
        except RateLimited as exc:
            self._usage = exc.usage
            return False
        return True

    def wait(self) -> float | None:
        return max(1, self._usage.reset_s) if self._usage is not None else None


class RateLimitHeadersMiddleware:
    """Adds RateLimit-Limit, -Remaining and -Reset (the IETF draft's fields) for the tightest limit a request
    was counted against, and Retry-After when it was refused."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        response = self.get_response(request)
        usage: Usage | None = getattr(request, "rate_limit_usage", None)
        if usage is not None:
            response["RateLimit-Limit"] = str(usage.limit)
            response["RateLimit-Remaining"] = str(usage.remaining)
            response["RateLimit-Reset"] = str(max(0, usage.reset_s))
            if response.status_code == 429 and not response.has_header("Retry-After"):
                response["Retry-After"] = str(max(1, usage.reset_s))
        return response


# Login -------------------------------------------------------------------------------------------------

LOGIN_SCOPES = ("login_account", "login_ip")


def _login_keys(request: HttpRequest) -> list[tuple[str, str]]:
    username = str(request.POST.get("username", "")).strip().lower()
    return [("login_account", f"name:{username}"), ("login_ip", f"ip:{client_ip(request)}")]


def login_refusal(request: HttpRequest) -> Usage | None:
    """The usage that refuses this login attempt before its password is checked, if any: failures so far
    have filled a tier of the account's or the address's limits."""
    refusals = []
    for scope, key in _login_keys(request):
        for index, rate in enumerate(rates(scope)):
            raw = get_usage(request, group=f"tribute.{scope}", key=_constant(key), rate=rate, increment=False)
            if raw is not None and int(raw["count"]) >= int(raw["limit"]):
                refusals.append(
                    Usage(
                        scope=scope,
                        limit=int(raw["limit"]),
                        count=int(raw["count"]),
                        reset_s=int(raw["time_left"]),
                        final_tier=index == len(rates(scope)) - 1,
                    )
                )
    return max(refusals, key=lambda usage: usage.reset_s, default=None)


def login_failed(request: HttpRequest) -> bool:
    """Count a failed attempt; True when it locked the account out (its last, longest tier is now full)."""
    locked = False
    for scope, key in _login_keys(request):
        count(request, scope=scope, key=key)
        if scope == "login_account":
            longest = rates(scope)[-1:]
            if longest:
                top = get_usage(
                    request, group=f"tribute.{scope}", key=_constant(key), rate=longest[0], increment=False
                )
                locked = top is not None and int(top["count"]) == int(top["limit"])
    return locked


def invitations_quota(
    request: HttpRequest | Request, *, user: User, shares: Sequence[tuple[str, int]]
) -> None:
    """Each address a split sheet invites (everyone but the proposer) takes one from the daily
    `invitations` quota; a proposal that would go over is refused whole (429, Retry-After)."""
    invited = len({email.strip().lower() for email, _ in shares} - {user.email.lower()})
    if invited:
        quota_consume_or_refuse(request, scope="invitations", user=user, amount=invited)


def quota_consume_or_refuse(
    request: HttpRequest | Request, *, scope: str, user: User, api_key: ApiKey | None = None, amount: int = 1
) -> None:
    """quota_consume, refusing with a 429 problem (its Retry-After is added by RateLimitHeadersMiddleware)."""
    try:
        quota_consume(request, scope=scope, user=user, api_key=api_key, amount=amount)
    except RateLimited as exc:
        raise ApiError(
            f"The daily limit of {exc.usage.limit} {scope} is reached; try again in {exc.retry_after_s} s.",
            code="rate_limited",
            status_code=429,
            extra={"retry_after_s": exc.retry_after_s},
        ) from None
