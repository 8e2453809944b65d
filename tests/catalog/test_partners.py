"""The partner API: a platform hosting media asks for verdicts (licensed by whom under which grant, or
which works it matches), fetched from a URL it serves here or sent as a file, and follows the claims they
open through signed, retried webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog import webhooks
from catalog.models import Claim, PartnerUpload, WebhookEvent
from catalog.services import asset_upload
from catalog.tasks import fingerprint_asset
from common import clock
from royalties.licences import licence_accept
from tests import factories
from tests.catalog import pictures
from tests.catalog.http_site import Site
from tests.catalog.pictures import jpeg

pytestmark = pytest.mark.django_db


@pytest.fixture
def site():
    with Site() as served:
        yield served


@pytest.fixture
def world(with_key):
    photos = pictures.photos()
    painter = factories.creator(username="mira", display_name="Mira")
    garden = factories.work(painter, title="Garden")
    fingerprint_asset(
        asset_upload(work=garden, user=painter, data=jpeg(photos["Garden"]), filename="g.jpg").asset.pk
    )
    offer = factories.offer(painter, garden, uses={"derivative": 0}, derivative_share_bps=2000)
    kai = factories.fan(username="kai", display_name="Kai")
    grant = licence_accept(offer=offer, user=kai).grant
    partner = factories.vendor(username="streamco", organisation_name="StreamCo")
    return {
        "painter": painter,
        "garden": garden,
        "grant": grant,
        "partner": partner,
        "client": with_key(factories.key(partner, "partner")),
        "copy": jpeg(photos["Garden"], mirror=True),
        "other": jpeg(photos["LadyBird"]),
    }


def _verdict(client, reference: str, data: bytes, **fields):
    return client.post(
        "/api/v1/partner/verdicts",
        {"reference": reference, "file": SimpleUploadedFile(f"{reference}.jpg", data), **fields},
        format="multipart",
    )


def test_a_licensed_copy_names_the_grant_and_an_unlicensed_one_the_work_and_its_claim(world) -> None:
    licensed = _verdict(world["client"], "video-1", world["copy"], licensee="kai")
    unlicensed = _verdict(world["client"], "video-2", world["copy"])
    unrelated = _verdict(world["client"], "video-3", world["other"])

    assert licensed.status_code == 201, licensed.content
    [match] = licensed.json()["verdict"]["matches"]
    assert licensed.json()["verdict"]["licensed"] is True
    assert (match["work"], match["licensed"], match["grant"], match["licensed_to"], match["claim"]) == (
        world["garden"].pk,
        True,
        world["grant"].pk,
        "Kai",
        None,
    )
    assert match["evidence"]["mirrored"] is True and match["confidence"] >= 0.9
    body = unlicensed.json()
    [match] = body["verdict"]["matches"]
    claim = Claim.objects.get()
    assert body["verdict"]["licensed"] is False
    assert (match["work"], match["owner"], match["licensed"], match["claim"]) == (
        world["garden"].pk,
        "Mira",
        False,
        claim.pk,
    )
    assert (claim.subject_partner_upload.reference, claim.respondent) == ("video-2", world["partner"])
    assert unrelated.json()["verdict"] == {"licensed": True, "matches": []}
    # only the file a claim is about is kept; the others leave their hash
    kept = {upload.reference: upload.blob_id for upload in PartnerUpload.objects.all()}
    assert kept == {"video-1": None, "video-2": hashlib.sha256(world["copy"]).hexdigest(), "video-3": None}


def test_a_verdict_is_asked_once_per_reference(world) -> None:
    first = _verdict(world["client"], "video-1", world["copy"])
    again = _verdict(world["client"], "video-1", world["copy"])
    other = _verdict(world["client"], "video-1", world["other"])

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert (other.status_code, other.json()["code"]) == (409, "reference_reused")
    assert PartnerUpload.objects.count() == 1
    listed = world["client"].get("/api/v1/partner/verdicts").json()
    assert [row["reference"] for row in listed["results"]] == ["video-1"]


def test_a_file_is_fetched_only_from_this_machine_and_never_through_a_redirect(world, site) -> None:
    site.files["/v/1.jpg"] = world["copy"]
    post = world["client"].post

    served = post(
        "/api/v1/partner/verdicts", {"reference": "r1", "url": f"{site.url}/v/1.jpg"}, format="json"
    )
    elsewhere = post(
        "/api/v1/partner/verdicts", {"reference": "r2", "url": "http://example.com/a.jpg"}, format="json"
    )
    redirected = post(
        "/api/v1/partner/verdicts", {"reference": "r3", "url": f"{site.url}/moved"}, format="json"
    )
    missing = post(
        "/api/v1/partner/verdicts", {"reference": "r4", "url": f"{site.url}/none.jpg"}, format="json"
    )

    assert served.status_code == 201 and served.json()["verdict"]["matches"][0]["work"] == world["garden"].pk
    assert (elsewhere.status_code, elsewhere.json()["code"]) == (400, "url_not_allowed")
    assert (redirected.status_code, redirected.json()["code"]) == (422, "fetch_failed")
    assert (missing.status_code, missing.json()["code"]) == (422, "fetch_failed")
    assert PartnerUpload.objects.count() == 1


def test_claim_events_reach_the_partner_signed_once_each_and_failures_are_retried(
    world, site, as_user, time_machine
) -> None:
    created = world["client"].post("/api/v1/partner/webhooks", {"url": f"{site.url}/hooks"}, format="json")
    assert created.status_code == 201
    secret = created.json()["secret"]
    _verdict(world["client"], "video-2", world["copy"])  # opens a claim: claim.opened
    claim = Claim.objects.get()
    site.status = 500

    assert webhooks.webhooks_deliver() == 0  # the receiver fails: retried later
    event = WebhookEvent.objects.get()
    assert (event.status, event.attempts, event.last_error) == ("pending", 1, "HTTP 500")
    assert webhooks.webhooks_deliver() == 0 and len(site.posts) == 1  # not due yet

    site.status = 200
    time_machine.move_to(clock.now() + timedelta(seconds=31))
    assert webhooks.webhooks_deliver() == 1
    as_user(world["painter"]).post(f"/api/v1/claims/{claim.pk}/decide", {"decision": "block"}, format="json")
    assert webhooks.webhooks_deliver() == 1
    assert webhooks.webhooks_deliver() == 0  # delivered events are not sent again

    opened_ids = {headers["Tribute-Event-Id"] for headers, _ in site.posts[:2]}
    assert len(opened_ids) == 1  # a redelivery carries the same id: the receiver drops it
    for headers, body in site.posts:
        timestamp, signed = (part.split("=", 1)[1] for part in headers["Tribute-Signature"].split(","))
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(signed, expected)
    types = [json.loads(body)["type"] for _, body in site.posts[1:]]
    assert types == ["claim.opened", "claim.decided"]
    decided = json.loads(site.posts[-1][1])["claim"]
    assert (decided["reference"], decided["decision"], decided["status"]) == ("video-2", "block", "decided")


def test_the_partner_api_needs_a_partner_key_of_an_organisation(world, with_key) -> None:
    reader = with_key(factories.key(world["partner"], "read", "write"))
    creator = factories.creator()

    refused = reader.get("/api/v1/partner/verdicts")
    as_creator = with_key(factories.key(creator, "read")).get("/api/v1/partner/verdicts")

    assert refused.status_code == 403
    assert as_creator.status_code == 403
    with pytest.raises(Exception, match="vendor"):
        factories.key(creator, "partner")
