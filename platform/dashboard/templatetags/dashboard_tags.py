from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import template

from catalog import selectors as catalog
from dashboard import match_words, plain_words
from dashboard.plain_words import percent

register = template.Library()


@register.filter
def money(amount_minor: int | None, currency: str) -> str:
    """12345678|money:"USD" -> '123,456.78 USD': exact, with thousands separators and the currency, as
    every amount on every page (charts format theirs the same way in js/chart-money.js)."""
    return money_text(amount_minor or 0, currency)


money_text = plain_words.money


# The same filter under its earlier name, used by pages written before every amount was grouped.
money_grouped = register.filter("money_grouped", money)


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


PERSONAL_WALLET_SUFFIX = "(personal wallet)"


@register.filter
def licensee_label(grant: Any) -> str:
    """Who holds a grant, named once: 'Kai Lindqvist', or 'Kai Lindqvist (Acme AI)' when an organisation
    holds it; a person's own wallet organisation is the person, not an organisation to name beside them."""
    name = str(grant.licensee.public_name)
    organisation = getattr(grant, "organisation", None)
    if organisation is None or str(organisation.name).endswith(PERSONAL_WALLET_SUFFIX):
        return name
    return f"{name} ({organisation.name})"


@register.filter
def confidence(value: float | None) -> str:
    """A match's probability as people read it: 0.973 -> '97%', 0.99999 -> 'over 99%'."""
    return match_words.confidence_text(float(value or 0))


@register.simple_tag
def invitations_waiting(user: Any) -> int:
    """How many co-ownership invitations wait for this user's answer (for the navigation's badge)."""
    if not getattr(user, "is_authenticated", False):
        return 0
    return catalog.invitations_open_for(user=user).count()
