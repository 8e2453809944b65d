"""The creators' rights reservations, in every form crawlers read, generated from the current offers and
consent on each request (so a change shows on the next one):

- robots.txt: one group per AI agent, disallowing the works whose use that agent makes is not on offer or
  refused by the creator, and the RSL `License:` line;
- IETF aipref `Content-Usage` and `Content-Signal` on content responses;
- W3C TDMRep: `/.well-known/tdmrep.json` and the `tdm-reservation` / `tdm-policy` headers;
- `Link: <licenses.xml>; rel="license"` on content responses.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from catalog import consent
from catalog.models import Offer, UseClass
from catalog.selectors import offers_public

# Crawlers and agents by what they do with what they fetch, and the use class that covers it.
AI_AGENTS: dict[str, tuple[str, ...]] = {
    UseClass.AI_TRAIN: (
        "GPTBot",
        "ClaudeBot",
        "CCBot",
        "Google-Extended",
        "Applebot-Extended",
        "Bytespider",
        "meta-externalagent",
        "cohere-training-data-crawler",
    ),
    UseClass.INDEX: ("OAI-SearchBot", "PerplexityBot", "Claude-SearchBot"),
    UseClass.AI_GENERATE: ("ChatGPT-User", "Claude-User", "Perplexity-User"),
}
# aipref categories (and Cloudflare's Content-Signal names) and the use class each stands for.
_AIPREF = {"train-ai": UseClass.AI_TRAIN, "search": UseClass.INDEX}
_CONTENT_SIGNAL = {"ai-train": UseClass.AI_TRAIN, "search": UseClass.INDEX, "ai-input": UseClass.AI_GENERATE}


def _terms(offer: Offer | None, refused: set[str]) -> tuple[set[str], set[str]]:
    """(uses on offer and consented to, of them the free ones)."""
    if offer is None:
        return set(), set()
    uses = {use.use_class: use.price_minor for use in offer.uses.all()}
    offered = {use for use in uses if use not in refused}
    return offered, {use for use in offered if uses[use] == 0}


def terms_url(offer: Offer) -> str:
    return f"{settings.SITE_URL}/api/v1/offers/{offer.pk}"


# The content headers of each work, remembered briefly: they go out with every delivered file, and a paid
# GET must stay nearly as cheap as the access that paid for it. robots.txt, licenses.xml and tdmrep.json
# are never cached here: a withdrawn consent shows there on the next request, and here within this long.
HEADERS_TTL_S = 5.0
_headers_seen: dict[int, tuple[float, dict[str, str]]] = {}


def content_headers(*, work_id: int) -> dict[str, str]:
    """The headers every answer about a work's content carries."""
    seen = _headers_seen.get(work_id)
    if seen is not None and time.monotonic() - seen[0] <= HEADERS_TTL_S:
        return seen[1]
    headers = _content_headers(work_id)
    if len(_headers_seen) >= 10_000:
        _headers_seen.clear()
    _headers_seen[work_id] = (time.monotonic(), headers)
    return headers


def forget() -> None:
    _headers_seen.clear()


def _content_headers(work_id: int) -> dict[str, str]:
    offer = offers_public().filter(work_id=work_id).first()
    refused = consent.refused_uses([work_id]).get(work_id, set())
    _, free = _terms(offer, refused)
    links = [f'<{settings.SITE_URL}/licenses.xml>; rel="license"; type="application/rsl+xml"']
    headers = {"tdm-reservation": "1"}
    if offer is not None:
        links.append(f'<{terms_url(offer)}>; rel="terms-of-service"')
        headers["tdm-policy"] = terms_url(offer)
    headers["Link"] = ", ".join(links)
    headers["Content-Usage"] = ", ".join(
        f"{name}={'y' if use in free else 'n'}" for name, use in _AIPREF.items()
    )
    headers["Content-Signal"] = ", ".join(
        f"{name}={'yes' if use in free else 'no'}" for name, use in _CONTENT_SIGNAL.items()
    )
    return headers


def robots_lines() -> list[str]:
    """One group per AI agent: the works whose use it makes is refused or not on offer are disallowed
    (nothing can license them); the others answer 402 and name their licence."""
    offers = list(offers_public().order_by("work_id"))
    refused = consent.refused_uses([offer.work_id for offer in offers])
    lines: list[str] = []
    for use_class, agents in AI_AGENTS.items():
        closed = [
            offer.work_id
            for offer in offers
            if use_class not in _terms(offer, refused.get(offer.work_id, set()))[0]
        ]
        for agent in agents:
            lines.append(f"User-agent: {agent}")
        lines.append("Disallow: /admin/")
        lines.append("Disallow: /accounts/")
        lines.extend(f"Disallow: /works/{work_id}/" for work_id in closed)
        lines.append("Allow: /")
        lines.append("")
    return lines


def tdmrep() -> list[dict[str, Any]]:
    """W3C TDMRep's well-known document: every published work's files are reserved, with its policy."""
    return [
        {"location": f"/works/{offer.work_id}/*", "tdm-reservation": 1, "tdm-policy": terms_url(offer)}
        for offer in offers_public().order_by("work_id")
    ]
