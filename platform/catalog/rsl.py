"""Offers as RSL 1.0 licence documents (https://rslstandard.org/rsl).

Our use classes map onto RSL's usage vocabulary: ai-train to `ai-train`; generation, style and voice use
to `ai-input` (content used as input to an AI system producing output); index to `ai-index`. Derivative
works have no RSL token: they are described by the offer's terms document. Each allowed use class becomes
one <license> with its per-access price; a licence fee is a `purchase` payment. A text's price per 1,000
tokens (retrieval) is a `use` payment whose `custom` link names the unit: the offer's terms document, at
its `per-1000-tokens` fragment. The text uses ai-index and ai-input map to the RSL tokens of that name.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lxml import etree

from catalog.models import Offer, UseClass
from common.currency import MINOR_DIGITS

RSL_NAMESPACE = "https://rslstandard.org/rsl"
CONTENT_TYPE = "application/rsl+xml"
SCHEMA_PATH = Path(__file__).with_name("rsl-1.0.xsd")

RSL_USAGE = {
    UseClass.AI_TRAIN: "ai-train",
    UseClass.AI_GENERATE: "ai-input",
    UseClass.STYLE: "ai-input",
    UseClass.VOICE: "ai-input",
    UseClass.INDEX: "ai-index",
    UseClass.AI_INDEX: "ai-index",
    UseClass.AI_INPUT: "ai-input",
}
_ALL_RSL_USAGES = ("ai-train", "ai-input", "ai-index")


def _major_units(amount_minor: int, currency: str) -> str:
    digits = MINOR_DIGITS.get(currency, 2)
    whole, fraction = divmod(amount_minor, 10**digits)
    return f"{whole}.{fraction:0{digits}d}" if digits else str(whole)


def _element(parent: etree._Element, tag: str, text: str | None = None, **attributes: str) -> etree._Element:
    child = etree.SubElement(parent, f"{{{RSL_NAMESPACE}}}{tag}", attrib=attributes)
    if text is not None:
        child.text = text
    return child


def _add_content(root: etree._Element, offer: Offer, site_url: str, refused: set[str]) -> None:
    work = offer.work
    # The work's content URL (a token for it also opens each file's /works/<id>/assets/<asset>/content),
    # and the licence server that issues tokens for it.
    content = _element(
        root,
        "content",
        url=f"{site_url}/works/{work.pk}/content",
        server=f"{site_url}/rsl",
        lastmod=offer.created_at.isoformat(),
    )
    uses = {use.use_class: use.price_minor for use in offer.uses.all() if use.use_class not in refused}
    token_prices = {
        use.use_class: use.price_per_1k_tokens_minor
        for use in offer.uses.all()
        if use.use_class not in refused
    }
    allowed_rsl = {RSL_USAGE[UseClass(u)] for u in uses if u in RSL_USAGE}
    prohibited = [token for token in _ALL_RSL_USAGES if token not in allowed_rsl]
    for use_class, price_minor in sorted(uses.items()):
        usage = RSL_USAGE.get(UseClass(use_class))
        if usage is None:
            continue
        licence = _element(content, "license")
        _element(licence, "permits", usage, type="usage")
        _element(licence, "permits", "commercial" if offer.commercial_use else "non-commercial", type="user")
        if offer.territories:
            _element(licence, "permits", " ".join(offer.territories), type="geo")
        if prohibited:
            _element(licence, "prohibits", " ".join(prohibited), type="usage")
        if price_minor > 0:
            payment = _element(licence, "payment", type="training" if usage == "ai-train" else "use")
            _element(payment, "amount", _major_units(price_minor, offer.currency), currency=offer.currency)
        elif not token_prices.get(use_class):
            _element(licence, "payment", type="attribution" if offer.attribution_required else "free")
        if token_prices.get(use_class):
            payment = _element(licence, "payment", type="training" if usage == "ai-train" else "use")
            _element(payment, "custom", f"{site_url}/api/v1/offers/{offer.pk}#per-1000-tokens")
            _element(
                payment,
                "amount",
                _major_units(token_prices[use_class], offer.currency),
                currency=offer.currency,
            )
        if offer.licence_fee_minor > 0:
            payment = _element(licence, "payment", type="purchase")
            _element(
                payment,
                "amount",
                _major_units(offer.licence_fee_minor, offer.currency),
                currency=offer.currency,
            )
    if not allowed_rsl:
        # No AI use is allowed at all: say so explicitly rather than publishing an empty content entry.
        licence = _element(content, "license")
        _element(licence, "prohibits", " ".join(_ALL_RSL_USAGES), type="usage")
    _element(content, "terms", f"{site_url}/api/v1/offers/{offer.pk}")
    _element(content, "copyright", work.created_by.public_name, type="person")


def render(offers: Iterable[Offer], *, site_url: str, refused: dict[int, set[str]] | None = None) -> bytes:
    """One RSL document describing every given offer (one <content> per work). A use the creator refuses
    (do-not-train, consent withdrawn) is published as prohibited, whatever the offer says."""
    root = etree.Element(f"{{{RSL_NAMESPACE}}}rsl", nsmap={None: RSL_NAMESPACE})  # type: ignore[dict-item]
    for offer in offers:
        _add_content(root, offer, site_url, (refused or {}).get(offer.work.pk, set()))
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))
