"""Licence terms in plain words, for people who will never read an RSL document."""

from __future__ import annotations

from decimal import Decimal

from catalog.models import Offer, UseClass
from catalog.services import Terms
from common.currency import MINOR_DIGITS, format_minor

USE_PHRASES = {
    UseClass.AI_TRAIN: "train AI models on it",
    UseClass.AI_GENERATE: "use it as input to generate new media with AI",
    UseClass.STYLE: "generate in its style",
    UseClass.VOICE: "synthesise speech or song in this voice",
    UseClass.INDEX: "index it for search",
    UseClass.DERIVATIVE: "make and sell derivative works from it",
    UseClass.AI_INDEX: "show snippets of it in an AI search index",
    UseClass.AI_INPUT: "place passages of it in an AI model's context to answer questions",
}


def terms_of(offer: Offer) -> Terms:
    """The terms an offer was published with (the inverse of offer_publish)."""
    return Terms(
        currency=offer.currency,
        uses={use.use_class: use.price_minor for use in offer.uses.all()},
        token_prices={
            use.use_class: use.price_per_1k_tokens_minor
            for use in offer.uses.all()
            if use.price_per_1k_tokens_minor
        },
        commercial_use=offer.commercial_use,
        attribution_required=offer.attribution_required,
        derivative_share_bps=offer.derivative_share_bps,
        derivative_approval_required=offer.derivative_approval_required,
        licence_fee_minor=offer.licence_fee_minor,
        territories=list(offer.territories),
        expires_at=offer.expires_at,
        quota=offer.quota,
        explicit_content_allowed=offer.explicit_content_allowed,
        max_vocal_seconds=offer.max_vocal_seconds,
        release_approval_required=offer.release_approval_required,
    )


def percent(bps: int | Decimal) -> str:
    """Basis points as a short percentage: 2000 -> '20%', 1250 -> '12.5%'."""
    value = (Decimal(bps) / 100).quantize(Decimal("0.01")).normalize()
    return f"{value:f}%"


def money(amount_minor: int, currency: str) -> str:
    """12345678, 'USD' -> '123,456.78 USD': exact, with thousands separators and the currency."""
    number, _, code = format_minor(amount_minor, currency).partition(" ")
    sign = "-" if number.startswith("-") else ""
    whole, dot, fraction = number.lstrip("-").partition(".")
    return f"{sign}{int(whole):,}{dot}{fraction} {code}"


def describe(terms: Terms) -> list[str]:
    """One sentence per term, in the order a licensee asks: what may I do, what does it cost, what must
    I do in return, and where and until when."""
    lines: list[str] = []
    for use_class in UseClass.values:
        if use_class not in terms.uses:
            continue
        price = terms.uses[use_class]
        cost = f"{money(price, terms.currency)} per use" if price else "no charge per use"
        lines.append(f"You may {USE_PHRASES[UseClass(use_class)]} ({cost}).")
    not_allowed = [USE_PHRASES[UseClass(u)] for u in UseClass.values if u not in terms.uses]
    if not_allowed:
        lines.append("You may not " + "; nor ".join(not_allowed) + ".")
    if terms.licence_fee_minor:
        lines.append(f"The licence costs {money(terms.licence_fee_minor, terms.currency)}, paid once.")
    else:
        lines.append("The licence itself is free.")
    lines.append(
        "Commercial use is allowed."
        if terms.commercial_use
        else "Non-commercial use only: you may not sell it."
    )
    if terms.attribution_required:
        lines.append("Credit the creator wherever you use it.")
    if UseClass.DERIVATIVE in terms.uses:
        if terms.derivative_share_bps:
            lines.append(
                f"The creator receives {percent(terms.derivative_share_bps)} of what your derivative earns."
            )
        else:
            lines.append("Your derivative's earnings are all yours.")
        if terms.derivative_approval_required:
            lines.append("The creator approves each derivative licence before it starts.")
    if terms.territories:
        lines.append("Only in " + ", ".join(terms.territories) + ".")
    else:
        lines.append("Worldwide.")
    if terms.expires_at:
        lines.append(f"The offer ends on {terms.expires_at:%-d %B %Y}.")
    if terms.quota:
        lines.append(f"At most {terms.quota:,} uses per licence.")
    if not terms.explicit_content_allowed:
        lines.append("No explicit lyrics: you declare each vocal clean, and explicit ones are refused.")
    if terms.max_vocal_seconds:
        lines.append(f"Vocals of at most {_duration(terms.max_vocal_seconds)}.")
    if terms.release_approval_required:
        lines.append("The creator approves each release of what you make before it goes on sale.")
    return lines


def _duration(seconds: int) -> str:
    minutes, rest = divmod(seconds, 60)
    if not minutes:
        return f"{rest} seconds"
    text = f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{text} {rest} seconds" if rest else text


def minor_digits(currency: str) -> int:
    return MINOR_DIGITS.get(currency, 2)
