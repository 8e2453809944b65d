"""The content URL: the original bytes only to the entitled (owners and licensees signed in, delivery links
from the access API), previews for everyone else; receipts that bind what was delivered."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import uuid
from datetime import timedelta

import jwt
import pytest
import soundfile
from django.test import Client
from PIL import Image

from access import content, receipts
from access.models import AccessEvent
from catalog.models import Grant
from catalog.services import asset_upload, grant_create
from common import clock
from media import preview as previews
from tests import factories

pytestmark = pytest.mark.django_db


def _read(response) -> bytes:
    """A streamed answer's bytes (reading to the end closes the file)."""
    return b"".join(response.streaming_content)


BIG = (1600, 1000)


def _published(*, uses: dict[str, int] | None = None, data: bytes | None = None, kind: str = "image"):
    creator = factories.creator()
    work = factories.work(creator, kind=kind)
    payload = data if data is not None else factories.png_bytes(size=BIG, color=(10, 120, 200))
    asset = asset_upload(work=work, user=creator, data=payload, filename="orig").asset
    factories.offer(creator, work, uses=uses or {"ai-generate": 25, "ai-train": 40})
    return creator, work, asset, payload


def _access(client, work_id: int, use: str = "ai-generate"):
    return client.post(
        "/api/v1/access",
        {"work": work_id, "use": use, "territory": "US"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )


def _funded_vendor():
    from common.money import Money
    from royalties.funding import prepaid_fund

    vendor = factories.vendor()
    organisation = vendor.organisations.get()
    prepaid_fund(organisation=organisation, amount=Money(10_000, "USD"), external_ref=str(uuid.uuid4()))
    return vendor, organisation


def test_an_anonymous_get_of_a_content_url_answers_402_with_the_price_and_no_bytes() -> None:
    _, work, _, original = _published()

    response = Client().get(f"/works/{work.pk}/content")

    assert response.status_code == 402
    assert original not in response.content
    body = response.json()
    assert (body["code"], body["use"], body["price_minor"], body["currency"]) == (
        "payment_required",
        "ai-generate",  # the cheapest priced use on offer
        25,
        "USD",
    )
    required = json.loads(base64.b64decode(response["PAYMENT-REQUIRED"]))
    assert required["x402Version"] == 2
    assert required["accepts"][0]["amount"] == str(25 * 10_000)
    assert required["resource"]["url"] == f"http://testserver/works/{work.pk}/content?use=ai-generate"
    assert response["WWW-Authenticate"] == 'License realm="tribute"'
    assert 'rel="license"' in response["Link"] and response["tdm-reservation"] == "1"


def test_the_use_asked_sets_the_price_and_an_unknown_use_is_a_clear_400() -> None:
    _, work, _, _ = _published()

    asked = Client().get(f"/works/{work.pk}/content?use=ai-train")
    unknown = Client().get(f"/works/{work.pk}/content?use=everything")
    not_offered = Client().get(f"/works/{work.pk}/content?use=voice")

    assert asked.status_code == 402 and asked.json()["price_minor"] == 40
    assert unknown.status_code == 400 and unknown.json()["code"] == "invalid_use_class"
    assert not_offered.status_code == 403 and not_offered.json()["code"] == "use_not_allowed"


def test_an_unpublished_works_content_is_not_found_for_others_and_served_to_its_owner() -> None:
    creator = factories.creator()
    draft = factories.work(creator)
    data = factories.png_bytes(color=(1, 2, 3))
    asset_upload(work=draft, user=creator, data=data, filename="d.png")
    owner = Client()
    owner.force_login(creator)

    assert Client().get(f"/works/{draft.pk}/content").status_code == 404
    stranger = Client()
    stranger.force_login(factories.creator())
    assert stranger.get(f"/works/{draft.pk}/content").status_code == 404
    served = owner.get(f"/works/{draft.pk}/content")
    assert served.status_code == 200 and _read(served) == data
    assert served["Entitlement"] == "session"


def test_owners_co_owners_and_grant_holders_get_the_original_others_pay() -> None:
    _, work, asset, original = _published()
    fan = factories.fan()
    grant_create(offer=work.offers.get(), user=fan)
    holder, stranger = Client(), Client()
    holder.force_login(fan)
    stranger.force_login(factories.fan())

    got = holder.get(f"/works/{work.pk}/assets/{asset.pk}/content")
    refused = stranger.get(f"/works/{work.pk}/assets/{asset.pk}/content")

    assert got.status_code == 200 and _read(got) == original
    assert refused.status_code == 402 and original not in refused.content
    Grant.objects.filter(licensee=fan).update(status="revoked")
    assert holder.get(f"/works/{work.pk}/content").status_code == 402


def test_the_access_api_answers_a_delivery_link_that_streams_the_paid_original(with_key) -> None:
    _, work, asset, original = _published()
    vendor, _ = _funded_vendor()
    client = with_key(factories.key(vendor, "access"))

    answer = _access(client, work.pk).json()
    [file] = answer["content"]
    response = Client().get(file["url"].removeprefix("http://127.0.0.1:8000"))

    assert (file["asset"], file["sha256"]) == (asset.pk, hashlib.sha256(original).hexdigest())
    assert response.status_code == 200 and response.streaming
    assert hashlib.sha256(_read(response)).hexdigest() == file["sha256"]
    assert (response["Entitlement"], response["Access-Id"]) == ("delivery", answer["access_id"])
    assert response["Content-Length"] == str(len(original))


def test_a_delivery_link_expires_and_a_tampered_or_foreign_link_gets_nothing(with_key, time_machine) -> None:
    time_machine.move_to(clock.now(), tick=False)
    _, work, _, original = _published()
    _, other_work, _, other_original = _published()
    vendor, _ = _funded_vendor()
    client = with_key(factories.key(vendor, "access"))
    url = _access(client, work.pk).json()["content"][0]["url"].removeprefix("http://127.0.0.1:8000")
    token = url.split("delivery=")[1]
    events = AccessEvent.objects.count()

    tampered = Client().get(url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB"))
    foreign = Client().get(f"/works/{other_work.pk}/content?delivery={token}")
    time_machine.shift(timedelta(seconds=301))
    expired = Client().get(url)

    for response in (tampered, foreign, expired):
        assert response.status_code == 403
        assert original not in response.content and other_original not in response.content
    assert tampered.json()["code"] == "delivery_invalid"
    assert foreign.json()["code"] == "delivery_other_content"
    assert "expired" in expired.json()["detail"]
    assert AccessEvent.objects.count() == events


def test_a_receipt_and_the_file_it_names_verify_offline_with_the_published_keys(with_key) -> None:
    _, work, _, _ = _published()
    vendor, organisation = _funded_vendor()
    client = with_key(factories.key(vendor, "access"))
    answer = _access(client, work.pk).json()
    data = _read(Client().get(answer["content"][0]["url"].split("8000", 1)[1]))
    jwks = Client().get("/.well-known/jwks.json").json()

    # Offline: only the file, the receipt and the published key set.
    keys = [jwt.PyJWK(key).key for key in jwks["keys"]]
    audience = f"http://127.0.0.1:8000/works/{work.pk}/content"
    claims = receipts.verify(answer["receipt"], keys, audience=audience)

    assert hashlib.sha256(data).hexdigest() in claims["content_sha256"]
    assert claims["use"] == "ai-generate"
    assert (claims["sub"], claims["licensee"]) == (f"organisation:{organisation.pk}", organisation.name)
    assert claims["aud"] == audience and claims["exp"] > claims["iat"]
    with pytest.raises(receipts.InvalidReceipt):
        receipts.verify(answer["receipt"], keys, audience="http://127.0.0.1:8000/works/999999/content")


def test_an_image_preview_is_marked_small_and_made_once(monkeypatch) -> None:
    _, work, asset, original = _published()
    made: list[str] = []
    real = previews.preview

    def counting(source, kind):
        made.append(kind)
        return real(source, kind)

    monkeypatch.setattr(previews, "preview", counting)

    first = Client().get(f"/works/{work.pk}/preview")
    again = Client().get(f"/works/{work.pk}/assets/{asset.pk}/preview")

    data = _read(first)
    assert first.status_code == 200 and first["Content-Type"] == "image/jpeg"
    assert _read(again) == data and made == ["image"]
    image = Image.open(io.BytesIO(data))
    assert max(image.size) == 512 and image.size == (512, 320)
    # The mark: a dark band across the middle of a uniformly coloured picture.
    plain = Image.open(io.BytesIO(original)).convert("RGB").resize(image.size)
    middle = (10, image.size[1] // 2 - 30)
    marked, unmarked = image.convert("RGB").getpixel(middle), plain.getpixel(middle)
    assert isinstance(marked, tuple) and isinstance(unmarked, tuple)
    assert sum(marked) < sum(unmarked) - 60


def test_an_audio_preview_is_a_short_low_rate_clip() -> None:
    long_wav = factories.wav_bytes(seconds=45.0, rate=44_100)
    _, work, _, original = _published(data=long_wav, kind="audio")

    response = Client().get(f"/works/{work.pk}/preview")

    data = _read(response)
    assert response.status_code == 200 and response["Content-Type"] == "audio/ogg"
    info = soundfile.info(io.BytesIO(data))
    assert (info.samplerate, info.channels) == (previews.PREVIEW_AUDIO_RATE, 1)
    assert 29.9 <= info.duration <= 30.0
    assert len(data) * 8 / info.duration < 64_000  # bits per second: a low bitrate
    assert original not in data


def test_a_draft_works_preview_is_not_shown_to_others() -> None:
    creator = factories.creator()
    draft = factories.work(creator)
    asset_upload(work=draft, user=creator, data=factories.png_bytes(), filename="d.png")

    assert Client().get(f"/works/{draft.pk}/preview").status_code == 404


def test_content_responses_name_the_licence_and_the_reservations() -> None:
    _, work, _, _ = _published(uses={"ai-generate": 25, "index": 0})
    offer = work.offers.get()

    response = Client().get(f"/works/{work.pk}/content")

    assert response["Link"] == (
        '<http://127.0.0.1:8000/licenses.xml>; rel="license"; type="application/rsl+xml", '
        f'<http://127.0.0.1:8000/api/v1/offers/{offer.pk}>; rel="terms-of-service"'
    )
    assert response["tdm-policy"] == f"http://127.0.0.1:8000/api/v1/offers/{offer.pk}"
    assert response["Content-Usage"] == "train-ai=n, search=y"
    assert response["Content-Signal"] == "ai-train=no, search=yes, ai-input=no"


def test_uploaded_files_are_not_reachable_under_the_media_url() -> None:
    _, _, asset, original = _published()

    response = Client().get(f"/media/{asset.blob.storage_name}")

    assert response.status_code == 404 and original not in response.content


def test_the_default_use_is_the_cheapest_priced_one_on_offer() -> None:
    _, work, _, _ = _published(uses={"ai-train": 5, "index": 9, "ai-generate": 0})

    assert content.default_use(work) == "ai-train"


def test_terms_with_a_licence_fee_are_not_sold_per_get_and_say_how_to_license() -> None:
    creator = factories.creator()
    work = factories.work(creator)
    data = factories.png_bytes(color=(4, 5, 6))
    asset_upload(work=work, user=creator, data=data, filename="f.png")
    factories.offer(creator, work, uses={"ai-train": 40}, licence_fee_minor=500)

    response = Client().get(f"/works/{work.pk}/content?use=ai-train")

    assert response.status_code == 401 and response.json()["code"] == "license_required"
    assert response["WWW-Authenticate"] == 'License realm="tribute"'
    assert "PAYMENT-REQUIRED" not in response and data not in response.content


def test_tdmrep_reserves_every_published_work_with_its_policy() -> None:
    _, work, _, _ = _published()
    creator = factories.creator()
    factories.work(creator, title="draft")  # unpublished: not listed
    offer = work.offers.get()

    document = Client().get("/.well-known/tdmrep.json").json()

    assert document == [
        {
            "location": f"/works/{work.pk}/*",
            "tdm-reservation": 1,
            "tdm-policy": f"http://127.0.0.1:8000/api/v1/offers/{offer.pk}",
        }
    ]


def test_robots_txt_has_a_group_per_ai_agent_closing_works_whose_use_is_not_on_offer() -> None:
    _, trained, _, _ = _published(uses={"ai-train": 5})
    _, generated, _, _ = _published(uses={"ai-generate": 5})

    robots = Client().get("/robots.txt").content.decode()

    def group(agent: str) -> str:
        return robots.split(f"User-agent: {agent}\n", 1)[1].split("\n\n", 1)[0]

    assert f"Disallow: /works/{generated.pk}/" in group("GPTBot")
    assert f"Disallow: /works/{trained.pk}/" not in group("GPTBot")
    assert f"Disallow: /works/{trained.pk}/" in group("ChatGPT-User")
    assert f"Disallow: /works/{generated.pk}/" not in group("ChatGPT-User")
    assert "License: http://127.0.0.1:8000/licenses.xml" in robots.splitlines()
