from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import template

from catalog import selectors as catalog
from common.currency import format_minor
from dashboard.plain_words import percent

register = template.Library()


@register.filter
def money(amount_minor: int | None, currency: str) -> str:
    """12345|money:"USD" -> '123.45 USD'."""
    return format_minor(amount_minor or 0, currency)


@register.filter
def money_grouped(amount_minor: int | None, currency: str) -> str:
    """12345678|money_grouped:"USD" -> '123,456.78 USD': exact, with thousands separators."""
    number, _, code = format_minor(amount_minor or 0, currency).partition(" ")
    sign = "-" if number.startswith("-") else ""
    whole, dot, fraction = number.lstrip("-").partition(".")
    return f"{sign}{int(whole):,}{dot}{fraction} {code}"


@register.filter
def grouped(value: int | None) -> str:
    """1234567|grouped -> '1,234,567'."""
    return f"{int(value or 0):,}"


@register.filter
def share_percent(value: float | None) -> str:
    """A share of one as a percentage: 0.9734|share_percent -> '97.3%'."""
    return f"{float(value or 0) * 100:.1f}%"


@register.filter
def bps(value: int | Decimal | None) -> str:
    """Basis points as a percentage: 2500|bps -> '25%'."""
    return percent(value or 0)


@register.filter
def filesize(size_bytes: int | None) -> str:
    size = float(size_bytes or 0)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


@register.filter
def seconds(duration_ms: int | None) -> str:
    total = round((duration_ms or 0) / 1000)
    return f"{total // 60}:{total % 60:02d}"


@register.simple_tag(takes_context=True)
def page_url(context: template.Context, param: str, number: int) -> str:
    """The current URL's query with one list's page changed, for pages that paginate two lists."""
    query = context["request"].GET.copy()
    query[param] = str(number)
    return "?" + query.urlencode()


@register.filter
def get_item(mapping: dict[Any, Any], key: Any) -> Any:
    return mapping.get(key) if mapping else None


@register.simple_tag
def invitations_waiting(user: Any) -> int:
    """How many co-ownership invitations wait for this user's answer (for the navigation's badge)."""
    if not getattr(user, "is_authenticated", False):
        return 0
    return catalog.invitations_open_for(user=user).count()
