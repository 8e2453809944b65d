"""The MCP server, driven by the official SDK's own client: an agent finds a text, reads its terms, buys
passages and traces its answer, all with an API key; a bad key gets nothing."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from mcp import Client

from access.agents import build_server
from access.models import Retrieval
from common.money import Money
from royalties.selectors import prepaid_available
from royalties.services import prepaid_fund
from tests import factories
from tests.text import samples
from tests.text.test_text_tracing import register_text

pytestmark = pytest.mark.django_db


def _call(secret: str, calls: list[tuple[str, dict]]) -> tuple[list[str], list]:
    """Run the calls in one MCP session; the tool names listed, and each call's result."""

    async def session():
        async with Client(build_server(api_key_secret=secret)) as client:
            tools = await client.list_tools()
            results = [await client.call_tool(name, arguments) for name, arguments in calls]
            return sorted(tool.name for tool in tools.tools), results

    return async_to_sync(session)()


def _payload(result):
    """The tool's structured result (a list comes wrapped as {"result": [...]})."""
    assert not result.is_error, result.content
    content = result.structured_content
    return content["result"] if set(content) == {"result"} else content


def test_an_agent_finds_buys_and_cites_text_through_mcp() -> None:
    writer, vendor = factories.creator(), factories.vendor()
    article = register_text(writer, samples.ARTICLE)
    organisation = vendor.organisations.get()
    prepaid_fund(organisation=organisation, amount=Money(500, "USD"), external_ref="mcp-fund")
    secret = factories.key(vendor, "read", "access")

    names, (found, terms, bought) = _call(
        secret,
        [
            ("search_catalogue", {"query": "missing fishing boat towed home", "kind": "article"}),
            ("work_terms", {"work": article.pk}),
            (
                "retrieve",
                {"query": "who rescued the drifting brothers", "max_tokens": 200, "idempotency_key": "a1"},
            ),
        ],
    )
    passage = _payload(bought)["passages"][0]["text"]
    _, (traced,) = _call(secret, [("trace", {"text": f"The paper wrote: {passage}"})])

    assert names == ["retrieve", "search_catalogue", "trace", "work_terms"]
    assert [w["work"] for w in _payload(found)] == [article.pk]
    assert _payload(terms)["uses"] == {"ai-input": {"price_minor": 0, "price_per_1k_tokens_minor": 20}}
    receipt = _payload(bought)
    assert receipt["total_minor"] > 0 and Retrieval.objects.get().total_minor == receipt["total_minor"]
    assert prepaid_available(organisation=organisation, currency="USD") == 500 - receipt["total_minor"]
    [match] = _payload(traced)["matches"]
    assert (match["work"], match["kind"], match["covered"]) == (article.pk, "quote", True)


def test_a_revoked_or_unscoped_key_gets_nothing_through_mcp() -> None:
    writer, vendor = factories.creator(), factories.vendor()
    register_text(writer, samples.ARTICLE)
    prepaid_fund(organisation=vendor.organisations.get(), amount=Money(500, "USD"), external_ref="mcp-2")
    read_only = factories.key(vendor, "read")

    _, (refused_buy,) = _call(read_only, [("retrieve", {"query": "boat", "max_tokens": 100})])
    _, (refused_all,) = _call("trb_not_a_real_key", [("search_catalogue", {"query": ""})])

    assert refused_buy.is_error and "access" in refused_buy.content[0].text
    assert refused_all.is_error and "API key" in refused_all.content[0].text
    assert Retrieval.objects.count() == 0
