"""The RSL licence server: a crawler that knows only robots.txt finds licenses.xml, acquires a licence token
from the server it names (OLP, OAuth 2.0 client credentials), and fetches the content with
`Authorization: License`; without a valid token the content URL says how to get one."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.test import Client
from lxml import etree

from access.models import AccessEvent
from accounts.models import ApiKey
from catalog.services import asset_upload
from common import clock
from common.money import Money
from royalties.funding import prepaid_fund
from royalties.selectors import prepaid_available
from tests import factories

pytestmark = pytest.mark.django_db


def _read(response) -> bytes:
    """A streamed answer's bytes (reading to the end closes the file)."""
    return b"".join(response.streaming_content)


RSL = "{https://rslstandard.org/rsl}"


@pytest.fixture
def world():
    creator = factories.creator()
    work = factories.work(creator)
    original = factories.png_bytes(size=(200, 100), color=(7, 7, 200))
    asset = asset_upload(work=work, user=creator, data=original, filename="o.png").asset
    factories.offer(creator, work, uses={"ai-train": 40, "ai-generate": 25})
    vendor = factories.vendor()
    organisation = vendor.organisations.get()
    prepaid_fund(organisation=organisation, amount=Money(1_000, "USD"), external_ref=str(uuid.uuid4()))
    secret = factories.key(vendor, "access")
    client_id = ApiKey.objects.get(user=vendor).prefix
    return {
        "work": work,
        "asset": asset,
        "original": original,
        "organisation": organisation,
        "credentials": (client_id, secret),
    }


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _token(client_id: str, secret: str, **fields: str):
    return Client().post("/rsl/token", fields, HTTP_AUTHORIZATION=_basic(client_id, secret))


def test_a_crawler_that_knows_only_robots_txt_reaches_the_content_through_the_licence_server(world) -> None:
    crawler = Client()
    # 1. robots.txt names the licence document.
    robots = crawler.get("/robots.txt").content.decode()
    [license_url] = [line.split(": ", 1)[1] for line in robots.splitlines() if line.startswith("License: ")]
    # 2. The licence document names the content URL, its licence server and the licences on offer.
    document = etree.fromstring(crawler.get(_path(license_url)).content)
    [content] = document.findall(f"{RSL}content")
    url, server = str(content.get("url")), str(content.get("server"))
    training = next(
        licence
        for licence in content.findall(f"{RSL}license")
        if licence.findtext(f"{RSL}permits[@type='usage']") == "ai-train"
    )
    # 3. Unlicensed, the content URL asks for a licence (and a price), not the bytes.
    refused = crawler.get(_path(url))
    assert refused.status_code == 402 and refused["WWW-Authenticate"].startswith("License")
    assert world["original"] not in refused.content
    # 4. The licence server issues a token for the licence the crawler accepts (OLP grant type rsl).
    issued = _token(
        *world["credentials"],
        grant_type="rsl",
        resource=url,
        license=etree.tostring(training).decode(),
    )
    assert issued.status_code == 200, issued.content
    answer = issued.json()
    assert (answer["token_type"], answer["scope"], answer["expires_in"]) == ("License", "ai-train", 600)
    assert _path(server) == "/rsl"
    # 5. The content URL serves the original to the token.
    served = crawler.get(_path(url), HTTP_AUTHORIZATION=f"License {answer['access_token']}")

    assert served.status_code == 200 and served["Entitlement"] == "license"
    assert hashlib.sha256(_read(served)).hexdigest() == world["asset"].blob_id
    event = AccessEvent.objects.get()
    assert (event.use_class, event.price_minor, str(event.access_id)) == ("ai-train", 40, answer["access_id"])
    assert prepaid_available(organisation=world["organisation"], currency="USD") == 1_000 - 40
    introspected = (
        Client()
        .post(
            "/rsl/introspect",
            {"token": answer["access_token"]},
            HTTP_AUTHORIZATION=_basic(*world["credentials"]),
        )
        .json()
    )
    assert introspected["active"] is True and introspected["scope"] == "ai-train"
    assert introspected["content_sha256"] == [world["asset"].blob_id]


def test_a_missing_bad_foreign_or_expired_token_gets_www_authenticate_and_no_bytes(
    world, time_machine
) -> None:
    time_machine.move_to(clock.now(), tick=False)
    work, original = world["work"], world["original"]
    other = factories.work(factories.creator())
    asset_upload(
        work=other, user=other.created_by, data=factories.png_bytes(color=(1, 1, 1)), filename="x.png"
    )
    factories.offer(other.created_by, other, uses={"ai-train": 40})
    token = _token(
        *world["credentials"],
        grant_type="rsl",
        resource=f"http://127.0.0.1:8000/works/{other.pk}/content",
        scope="ai-train",
    ).json()["access_token"]

    bad = Client().get(f"/works/{work.pk}/content", HTTP_AUTHORIZATION="License not-a-token")
    foreign = Client().get(f"/works/{work.pk}/content", HTTP_AUTHORIZATION=f"License {token}")
    time_machine.shift(timedelta(seconds=601))
    expired = Client().get(f"/works/{other.pk}/content", HTTP_AUTHORIZATION=f"License {token}")

    for response, error in (
        (bad, "invalid_token"),
        (foreign, "insufficient_scope"),
        (expired, "expired_token"),
    ):
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == f'License realm="tribute", error="{error}"'
        assert original not in response.content
    introspected = (
        Client()
        .post("/rsl/introspect", {"token": token}, HTTP_AUTHORIZATION=_basic(*world["credentials"]))
        .json()
    )
    assert introspected == {"active": False}


def test_the_token_endpoint_refuses_unknown_clients_and_other_addresses_and_charges_nothing(world) -> None:
    client_id, secret = world["credentials"]
    resource = f"http://127.0.0.1:8000/works/{world['work'].pk}/content"

    wrong_secret = _token(client_id, secret + "x", grant_type="rsl", resource=resource, scope="ai-train")
    wrong_grant = _token(client_id, secret, grant_type="password", resource=resource, scope="ai-train")
    elsewhere = _token(
        client_id, secret, grant_type="rsl", resource="https://example.org/works/1/content", scope="ai-train"
    )
    not_offered = _token(client_id, secret, grant_type="rsl", resource=resource, scope="voice")

    assert (wrong_secret.status_code, wrong_secret.json()["error"]) == (401, "invalid_client")
    assert (wrong_grant.status_code, wrong_grant.json()["error"]) == (400, "unsupported_grant_type")
    assert (elsewhere.status_code, elsewhere.json()["error"]) == (400, "invalid_target")
    assert (not_offered.status_code, not_offered["Problem-Code"]) == (403, "use_not_allowed")
    assert AccessEvent.objects.count() == 0
    assert prepaid_available(organisation=world["organisation"], currency="USD") == 1_000


def test_the_licence_server_publishes_its_public_keys(world) -> None:
    keys = Client().get("/rsl/keys").json()["keys"]

    assert keys == Client().get("/.well-known/jwks.json").json()["keys"]
    assert keys[0]["alg"] == "EdDSA" and keys[0]["kty"] == "OKP"
