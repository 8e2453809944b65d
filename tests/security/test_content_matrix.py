"""Authorization matrix for original bytes: every route that serves a work's file (the content URLs, the
previews, the dashboard's asset view, the media URL), found from the URL resolver, called by everyone who
is not entitled (anonymous, strangers of each role, a vendor's API key without a delivery link, forged,
foreign and expired links and licence tokens, a malformed x402 payment). Pass criterion: no response
carries the original bytes, for drafts and published works, images and audio. The owner is the control."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from access import services
from catalog.services import asset_upload
from common import clock
from common.money import Money
from royalties.funding import prepaid_fund
from tests import factories

pytestmark = [pytest.mark.security, pytest.mark.django_db]


def _read(response) -> bytes:
    """A streamed answer's bytes (reading to the end closes the file)."""
    return b"".join(response.streaming_content)


@pytest.fixture(autouse=True)
def fresh_process_caches():
    """Ids are reused after a rolled-back test: the content path's per-process caches must not carry over."""
    services.forget_caches()
    yield
    services.forget_caches()


FILE_ROUTES = {
    "work-content",
    "asset-content",
    "work-preview",
    "asset-preview",
    "dashboard:asset-file",
    "work-public-preview",  # the public page's picture of a released or catalogued work: a preview only
}


def _named_routes(patterns=None, prefix: str = "", namespace: str = "") -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found.update(_named_routes(entry.url_patterns, prefix + str(entry.pattern), inner))
        elif isinstance(entry, URLPattern) and entry.name:
            found[namespace + entry.name] = prefix + str(entry.pattern)
    return found


def _file_routes() -> dict[str, str]:
    """Every route whose address serves a work's or an asset's bytes: content, preview, file."""
    routes = _named_routes()
    return {
        name: route
        for name, route in routes.items()
        if ("<int:asset_id>" in route or "<int:work_id>" in route)
        and any(word in route for word in ("content", "preview", "file"))
        and "offers/" not in route  # the offer editor's preview of draft terms shows no file
    }


def _fill(route: str, work_id: int, asset_id: int) -> str:
    return "/" + route.replace("<int:work_id>", str(work_id)).replace("<int:asset_id>", str(asset_id))


@pytest.fixture
def works(with_key):
    creator = factories.creator()
    made = []
    for kind, data in (
        ("image", factories.png_bytes(size=(700, 500), color=(200, 100, 0))),
        ("audio", factories.wav_bytes(seconds=2.0, rate=22_050)),
    ):
        for published in (True, False):
            work = factories.work(creator, kind=kind, title=f"{kind} {published}")
            asset = asset_upload(work=work, user=creator, data=data, filename=f"f.{kind}").asset
            if published:
                factories.offer(creator, work, uses={"ai-train": 40, "ai-generate": 0})
            made.append((work, asset, data))
    vendor = factories.vendor()
    organisation = vendor.organisations.get()
    prepaid_fund(organisation=organisation, amount=Money(10_000, "USD"), external_ref=str(uuid.uuid4()))
    secret = factories.key(vendor, "access")
    api = with_key(secret)
    # A real delivery link for another work (the first published one), to try on every other file.
    other = factories.work(creator, title="other")
    asset_upload(work=other, user=creator, data=factories.png_bytes(color=(9, 9, 9)), filename="o.png")
    factories.offer(creator, other, uses={"ai-train": 40})
    answer = api.post(
        "/api/v1/access",
        {"work": other.pk, "use": "ai-train", "territory": "US"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    ).json()
    foreign_link = answer["content"][0]["url"].split("delivery=")[1]
    return {"creator": creator, "made": made, "secret": secret, "foreign_link": foreign_link}


def _callers(world) -> list[tuple[str, Client, dict[str, Any], str]]:
    """(who, client, headers, query) of everyone not entitled to the originals."""

    def logged_in(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    expired = services.delivery.issue(
        services.delivery.DeliveryGrant(
            access_id=str(uuid.uuid4()),
            organisation_id=1,
            work_id=1,
            use_class="ai-train",
            sha256=(),
            expires_at=int((clock.now() - timedelta(minutes=1)).timestamp()),
        ),
        services.delivery_key(),
    )
    garbage_payment = base64.b64encode(b'{"x402Version": 2, "payload": {}}').decode()
    return [
        ("anonymous", Client(), {}, ""),
        ("fan", logged_in(factories.fan()), {}, ""),
        ("other creator", logged_in(factories.creator()), {}, ""),
        ("vendor session", logged_in(factories.vendor(organisation_name="Other AI")), {}, ""),
        ("vendor key", Client(), {"HTTP_AUTHORIZATION": f"Bearer {world['secret']}"}, ""),
        ("vendor x-api-key", Client(), {"HTTP_X_API_KEY": world["secret"]}, ""),
        ("forged link", Client(), {}, "delivery=d1.e30.AAAA"),
        ("foreign link", Client(), {}, f"delivery={world['foreign_link']}"),
        ("expired link", Client(), {}, f"delivery={expired}"),
        ("garbage licence", Client(), {"HTTP_AUTHORIZATION": "License abc.def.ghi"}, ""),
        ("garbage payment", Client(), {"HTTP_PAYMENT_SIGNATURE": garbage_payment}, ""),
    ]


def test_the_file_routes_found_are_the_known_ones() -> None:
    assert set(_file_routes()) == FILE_ROUTES


def test_no_unentitled_caller_receives_original_bytes_from_any_file_route(works) -> None:
    routes = _file_routes()
    callers = _callers(works)
    calls = 0
    for work, asset, original in works["made"]:
        paths = [_fill(route, work.pk, asset.pk) for route in routes.values()]
        paths.append(f"/media/{asset.blob.storage_name}")
        for path in paths:
            for who, client, headers, query in callers:
                response = client.get(f"{path}?{query}" if query else path, **headers)
                body = _read(response) if response.streaming else response.content
                assert original not in body, (who, path, response.status_code)
                assert response.status_code in {200, 400, 401, 402, 403, 404, 409}, (who, path)
                if response.status_code == 200:
                    assert "preview" in path or "file" in path, (who, path)
                calls += 1
    assert calls == 4 * (len(routes) + 1) * len(callers)


def test_the_owner_gets_the_originals_through_the_content_and_file_routes(works) -> None:
    owner = Client()
    owner.force_login(works["creator"])
    for work, asset, original in works["made"]:
        for path in (f"/works/{work.pk}/content", f"/dashboard/assets/{asset.pk}/file/"):
            response = owner.get(path)
            assert response.status_code == 200, path
            assert _read(response) == original, path
