"""An MCP server (the official `mcp` SDK) for AI vendors' agents: find licensable works, read their terms,
buy passages of text and trace text, authenticated by a Tribute API key.

Over stdio (`manage.py mcp`) the key comes from the TRIBUTE_API_KEY environment variable; over streamable
HTTP (`manage.py mcp --http`) each request carries it as `Authorization: Bearer trb_...`. Every tool call
checks the key again, with the scope it needs (`read`; `access` to buy), so a revoked key stops at once.
The tools call the same services as the REST API: a retrieval here is the same one charge and receipt.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import uvicorn
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Q
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import AnyHttpUrl

from access import services
from accounts.models import ApiKey
from accounts.services import api_key_authenticate
from catalog import selectors, tracing
from catalog.models import Offer
from common.problems import ApiError

INSTRUCTIONS = (
    "Tribute licenses creators' works to AI systems. Use search_catalogue to find works and their prices, "
    "work_terms for the full terms of one work, retrieve to buy passages of text for a query (each passage "
    "is paid per 1,000 tokens at its own work's price; the answer carries a signed receipt to keep), and "
    "trace to check whether a text quotes or paraphrases registered works."
)
SEARCH_LIMIT = 25


class ToolRefused(ToolError):
    """A tool call refused with a reason the agent can act on (the SDK sends a ToolError's message)."""


class ApiKeyVerifier:
    """Bearer tokens of the HTTP transport are Tribute API keys."""

    async def verify_token(self, token: str) -> AccessToken | None:
        key = await sync_to_async(api_key_authenticate, thread_sensitive=True)(secret=token)
        if key is None:
            return None
        return AccessToken(token=token, client_id=f"api-key:{key.pk}", scopes=list(key.scopes))


def _caller(fixed_secret: str | None, scope: str) -> ApiKey:
    secret = fixed_secret
    if secret is None:
        token = get_access_token()
        secret = token.token if token is not None else None
    key = api_key_authenticate(secret=secret) if secret else None
    if key is None:
        raise ToolRefused("The API key is missing, revoked or expired.")
    if not key.has_scope(scope):
        raise ToolRefused(f"The API key lacks the `{scope}` scope.")
    return key


def _terms(offer: Offer) -> dict[str, Any]:
    return {
        "work": offer.work_id,
        "title": offer.work.title,
        "kind": offer.work.kind,
        "creator": offer.work.created_by.public_name,
        "offer": offer.pk,
        "offer_version": offer.version,
        "currency": offer.currency,
        "uses": {
            use.use_class: {
                "price_minor": use.price_minor,
                "price_per_1k_tokens_minor": use.price_per_1k_tokens_minor,
            }
            for use in offer.uses.all()
        },
        "commercial_use": offer.commercial_use,
        "attribution_required": offer.attribution_required,
        "licence_fee_minor": offer.licence_fee_minor,
        "territories": list(offer.territories),
        "expires_at": offer.expires_at.isoformat() if offer.expires_at else None,
        "rsl_url": f"{settings.SITE_URL}/api/v1/offers/{offer.pk}/rsl",
    }


def _search(fixed_secret: str | None, query: str, kind: str | None) -> list[dict[str, Any]]:
    _caller(fixed_secret, "read")
    offers = selectors.offers_public().select_related("work", "work__created_by")
    if kind:
        offers = offers.filter(work__kind=kind)
    words = query.strip()
    if words:
        by_text = {
            c.work_id
            for use in ("ai-input", "ai-index", "ai-train")
            for c in selectors.passage_candidates(query=words, use_class=use, currency="USD", limit=50)
            if c.score >= 0.3
        }
        offers = offers.filter(
            Q(work__title__icontains=words) | Q(work__description__icontains=words) | Q(work_id__in=by_text)
        )
    return [_terms(offer) for offer in offers[:SEARCH_LIMIT]]


def _work_terms(fixed_secret: str | None, work_id: int) -> dict[str, Any]:
    _caller(fixed_secret, "read")
    offer = (
        selectors.offers_public().select_related("work", "work__created_by").filter(work_id=work_id).first()
    )
    if offer is None:
        raise ToolRefused(f"Work {work_id} is not offered in the catalogue.")
    return _terms(offer)


def _retrieve(
    fixed_secret: str | None,
    query: str,
    max_tokens: int,
    use: str,
    territory: str,
    currency: str,
    max_price_minor: int | None,
    idempotency_key: str | None,
) -> dict[str, Any]:
    key = _caller(fixed_secret, "access")
    if key.organisation is None:
        raise ToolRefused("Buying text needs an organisation's API key.")
    request = services.RetrievalRequest(
        query=query,
        max_tokens=max_tokens,
        use_class=use,
        territory=territory.upper(),
        currency=currency.upper(),
        max_price_minor=max_price_minor,
    )
    result = services.retrieval_request(
        organisation=key.organisation,
        api_key=key,
        idempotency_key=idempotency_key or f"mcp-{uuid.uuid4()}",
        request=request,
    )
    answer: dict[str, Any] = json.loads(result.body)
    return answer


def _trace(fixed_secret: str | None, text: str) -> dict[str, Any]:
    key = _caller(fixed_secret, "read")
    info, matches = tracing.trace(data=text.encode("utf-8"), user=key.user, text_only=True)
    return {
        "media_type": info.media_type,
        "matches": [
            {
                "work": item.work.pk,
                "title": item.work.title,
                "kind": item.match.kind,
                "confidence": round(item.match.confidence, 4),
                "overlap": item.match.overlap,
                "covered": item.covered,
                "passages": [vars(pair) for pair in item.passages],
            }
            for item in matches
        ],
    }


async def _run(function: Any, *args: Any) -> Any:
    """Django's ORM is synchronous: tools run it in the thread that owns the connection."""
    try:
        return await sync_to_async(function, thread_sensitive=True)(*args)
    except ApiError as exc:
        raise ToolRefused(f"{exc.problem_code}: {exc.detail}") from None


def build_server(*, api_key_secret: str | None = None, http: bool = False) -> MCPServer:
    """The server. With `api_key_secret` every call acts as that key (stdio, tests); with `http` the key is
    each request's bearer token."""
    auth = None
    verifier = None
    if http:
        verifier = ApiKeyVerifier()
        auth = AuthSettings(
            issuer_url=AnyHttpUrl(settings.SITE_URL),
            resource_server_url=AnyHttpUrl(f"{settings.SITE_URL}/mcp"),
            required_scopes=["read"],
            # The bearer tokens are API keys, not tokens an authorization server issued for a resource:
            # the verifier checks the key itself, so there is no audience to compare.
            validate_token_resource=False,
        )
    server: MCPServer = MCPServer(
        name="tribute", instructions=INSTRUCTIONS, token_verifier=verifier, auth=auth, version="1"
    )

    @server.tool()
    async def search_catalogue(query: str = "", kind: str | None = None) -> list[dict[str, Any]]:
        """Works on offer whose title, description or text matches the query (empty: all), with their
        prices per access and per 1,000 tokens. `kind`: image, audio, voice, style, article, lyrics, book."""
        result: list[dict[str, Any]] = await _run(_search, api_key_secret, query, kind)
        return result

    @server.tool()
    async def work_terms(work: int) -> dict[str, Any]:
        """The current licence terms of one work: uses allowed, prices, territory, expiry, RSL link."""
        result: dict[str, Any] = await _run(_work_terms, api_key_secret, work)
        return result

    @server.tool()
    async def retrieve(
        query: str,
        max_tokens: int,
        use: str = "ai-input",
        territory: str = "US",
        currency: str = "USD",
        max_price_minor: int | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Buy the passages of licensed text that best answer the query, within max_tokens and
        max_price_minor. `use`: ai-index (snippets), ai-input (passages for your model's context) or
        ai-train (whole texts). Charged to your organisation's prepaid balance; keep the receipt. Send the
        same idempotency_key to retry without paying twice."""
        result: dict[str, Any] = await _run(
            _retrieve,
            api_key_secret,
            query,
            max_tokens,
            use,
            territory,
            currency,
            max_price_minor,
            idempotency_key,
        )
        return result

    @server.tool()
    async def trace(text: str) -> dict[str, Any]:
        """The registered works a text quotes (with the passages on both sides) or closely paraphrases,
        and whether your licences cover each."""
        result: dict[str, Any] = await _run(_trace, api_key_secret, text)
        return result

    return server


def http_server(*, host: str, port: int) -> uvicorn.Server:
    """The streamable HTTP transport at `/mcp`, each request's bearer token an API key, as `manage.py mcp
    --http` serves it (`serve()` runs it; setting `should_exit` stops it)."""
    app = build_server(http=True).streamable_http_app(host=host)
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
