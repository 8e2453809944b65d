"""The MCP server, driven by the official SDK's own client: an agent finds a text, reads its terms, buys
passages and traces its answer, all with an API key; a bad key gets nothing. In process, and over the
streamable HTTP transport with the key as a bearer token."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connections
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from access.agents import build_server, http_server
from access.models import Retrieval
from accounts.services import api_key_authenticate, api_key_revoke
from common.money import Money
from royalties.funding import prepaid_fund
from royalties.selectors import prepaid_available
from tests import factories
from tests.security.live import free_port
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


# Over HTTP ----------------------------------------------------------------------------------------------

SERVER_START_TIMEOUT_S = 60


@contextmanager
def _http_server() -> Iterator[str]:
    """`manage.py mcp --http`'s server on a free 127.0.0.1 port, in a thread of this process (so its
    tools see the test database, committed by a transactional test, and the passage index); its URL.
    Ready once uvicorn reports it has bound the socket, waited for within a bound."""
    port = free_port()
    server = http_server(host="127.0.0.1", port=port)

    async def serve() -> None:
        try:
            await server.serve()
        finally:  # the thread that ran the tools' queries gives its connection back
            await sync_to_async(connections.close_all, thread_sensitive=True)()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="mcp-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive():
            raise AssertionError("the MCP HTTP server stopped while starting")
        if time.monotonic() > deadline:
            raise AssertionError(f"the MCP HTTP server did not start within {SERVER_START_TIMEOUT_S} s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=SERVER_START_TIMEOUT_S)
        assert not thread.is_alive(), "the MCP HTTP server did not stop"


def _closing_connections(function):
    """`function`, giving back the database connection of the worker thread it runs in."""

    def run(*args):
        try:
            return function(*args)
        finally:
            connections.close_all()

    return run


def _over_http(url: str, secret: str, calls: list[tuple[str, dict]], before_call=None):
    """One MCP session over streamable HTTP with `secret` as the bearer token: the tool names listed, each
    call's result (or the MCPError it raised) and the HTTP statuses answered during each call;
    `before_call(i)` runs before call i."""
    statuses: list[list[int]] = [[] for _ in calls]
    current = [-1]

    async def record(response: httpx2.Response) -> None:
        if current[0] >= 0:
            statuses[current[0]].append(response.status_code)

    async def session():
        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {secret}"}, timeout=60, event_hooks={"response": [record]}
        )
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            tools = await client.list_tools()
            results: list[Any] = []
            for i, (name, arguments) in enumerate(calls):
                if before_call is not None:
                    await sync_to_async(_closing_connections(before_call), thread_sensitive=False)(i)
                current[0] = i
                try:
                    results.append(await client.call_tool(name, arguments))
                except MCPError as refused:
                    results.append(refused)
            current[0] = -1
            return sorted(tool.name for tool in tools.tools), results, statuses

    return asyncio.run(session())


def _status_without_session(url: str, secret: str | None) -> tuple[int, str]:
    """The status and WWW-Authenticate of a bare initialize request (what any client sends first)."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    response = httpx2.post(url, json=body, headers=headers, timeout=60)
    return response.status_code, response.headers.get("www-authenticate", "")


@pytest.mark.django_db(transaction=True)
def test_an_agent_lists_tools_and_reads_terms_over_streamable_http_with_its_api_key() -> None:
    writer, vendor = factories.creator(), factories.vendor()
    article = register_text(writer, samples.ARTICLE)
    secret = factories.key(vendor, "read", "access")

    with _http_server() as url:
        names, (terms, found), _ = _over_http(
            url,
            secret,
            [
                ("work_terms", {"work": article.pk}),
                ("search_catalogue", {"query": "missing fishing boat towed home", "kind": "article"}),
            ],
        )

    assert names == ["retrieve", "search_catalogue", "trace", "work_terms"]
    assert (_payload(terms)["work"], _payload(terms)["offer"]) == (article.pk, article.offers.get().pk)
    assert _payload(terms)["uses"] == {"ai-input": {"price_minor": 0, "price_per_1k_tokens_minor": 20}}
    assert [w["work"] for w in _payload(found)] == [article.pk]


@pytest.mark.django_db(transaction=True)
def test_a_missing_unknown_revoked_or_unscoped_bearer_key_is_refused_over_http() -> None:
    writer, vendor = factories.creator(), factories.vendor()
    article = register_text(writer, samples.ARTICLE)
    secret = factories.key(vendor, "read")
    to_revoke = factories.key(vendor, "read")
    unscoped = factories.key(vendor, "access")

    def revoke_before_second_call(i: int) -> None:
        if i == 1:
            key = api_key_authenticate(secret=to_revoke)
            assert key is not None
            api_key_revoke(api_key=key)

    with _http_server() as url:
        missing = _status_without_session(url, None)
        unknown = _status_without_session(url, "trb_not_a_real_key")
        accepted = _status_without_session(url, secret)
        without_read = _status_without_session(url, unscoped)
        _, (before, after), statuses = _over_http(
            url,
            to_revoke,
            [("work_terms", {"work": article.pk}), ("work_terms", {"work": article.pk})],
            before_call=revoke_before_second_call,
        )
        after_revocation = _status_without_session(url, to_revoke)

    assert missing[0] == unknown[0] == after_revocation[0] == 401
    assert 'error="invalid_token"' in unknown[1] and "Bearer" in missing[1]
    assert accepted[0] == 200
    assert without_read[0] == 403 and 'error="insufficient_scope"' in without_read[1]
    # A session opened with the key stops at the first request after it is revoked.
    assert _payload(before)["work"] == article.pk and statuses[0] == [200]
    assert isinstance(after, MCPError) and statuses[1] == [401]
