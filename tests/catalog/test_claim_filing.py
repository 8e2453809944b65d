"""Anyone with a registered work files a claim by hand against someone else's published file, with their
evidence; the trace's evidence is attached when the fingerprints see the copy."""

from __future__ import annotations

import pytest

from catalog.models import Claim
from catalog.services import asset_upload
from catalog.tasks import fingerprint_asset
from tests import factories
from tests.catalog import pictures
from tests.catalog.pictures import jpeg

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    photos = pictures.photos()
    painter, copier = factories.creator(), factories.creator()
    original = factories.work(painter, title="Garden")
    fingerprint_asset(
        asset_upload(work=original, user=painter, data=jpeg(photos["Garden"]), filename="garden.jpg").asset.pk
    )
    copies = {}
    for name, data in (
        ("mirrored", jpeg(photos["Garden"], mirror=True)),
        ("other", jpeg(photos["LadyBird"])),
    ):
        work = factories.work(copier, title=name)
        # Uploaded but not fingerprinted here: no claim opens by itself, so the one filed by hand is first.
        copies[name] = asset_upload(work=work, user=copier, data=data, filename=f"{name}.jpg").asset
        factories.offer(copier, work, uses={"ai-generate": 1})
    draft = factories.work(copier, title="draft")
    copies["draft"] = asset_upload(
        work=draft, user=copier, data=jpeg(photos["Garden"]), filename="d.jpg"
    ).asset
    return {"painter": painter, "copier": copier, "original": original, "copies": copies}


def _file(client, work, asset, statement: str = "My photograph, taken in 2019; the copy is mirrored."):
    return client.post(
        "/api/v1/claims", {"work": work.pk, "asset": asset.pk, "statement": statement}, format="json"
    )


def test_a_claim_filed_by_hand_carries_the_traces_evidence(world, as_user) -> None:
    response = _file(as_user(world["painter"]), world["original"], world["copies"]["mirrored"])

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["work"], body["respondent"], body["subject_asset"]) == (
        world["original"].pk,
        world["copier"].public_name,
        world["copies"]["mirrored"].pk,
    )
    assert body["match_kind"] == "image" and body["confidence"] >= 0.9
    assert body["evidence"]["mirrored"] is True and body["evidence"]["filed_by"] == world["painter"].pk
    assert body["events"][0]["statement"].startswith("My photograph")
    # the respondent sees it among the claims against them, and may dispute it
    against = as_user(world["copier"]).get("/api/v1/claims").json()["results"]
    assert [claim["id"] for claim in against] == [body["id"]]
    disputed = as_user(world["copier"]).post(
        f"/api/v1/claims/{body['id']}/dispute", {"statement": "Taken by me."}, format="json"
    )
    assert disputed.status_code == 200


def test_a_copy_the_fingerprints_miss_is_filed_as_a_manual_claim(world, as_user) -> None:
    response = _file(as_user(world["painter"]), world["original"], world["copies"]["other"])

    assert response.status_code == 201
    assert (response.json()["match_kind"], response.json()["confidence"]) == ("manual", 0.0)


def test_claims_by_hand_are_refused_where_they_do_not_belong(world, as_user) -> None:
    painter, copier = as_user(world["painter"]), as_user(world["copier"])
    copies = world["copies"]

    assert _file(copier, world["original"], copies["mirrored"]).json()["code"] == "work_not_found"
    assert _file(painter, world["original"], copies["draft"]).json()["code"] == "asset_not_found"
    own = world["original"].assets.get()
    assert _file(painter, world["original"], own).json()["code"] == "asset_not_found"
    assert _file(painter, world["original"], copies["mirrored"], statement="  ").status_code == 400
    assert _file(painter, world["original"], copies["mirrored"]).status_code == 201
    again = _file(painter, world["original"], copies["mirrored"])
    assert (again.status_code, again.json()["code"]) == (409, "claim_exists")
    assert Claim.objects.count() == 1
