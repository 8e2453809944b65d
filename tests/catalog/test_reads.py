"""The read endpoints return exactly the caller's objects."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.services import ParentClaim, derivative_create, grant_create
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_works_assets_and_split_sheets_can_be_read_back(as_user) -> None:
    creator = factories.creator()
    work = factories.work(creator)
    client = as_user(creator)
    asset_id = client.post(
        f"/api/v1/works/{work.pk}/assets",
        {"file": SimpleUploadedFile("a.png", factories.png_bytes())},
        format="multipart",
    ).json()["id"]

    assets = client.get(f"/api/v1/works/{work.pk}/assets").json()
    asset = client.get(f"/api/v1/assets/{asset_id}").json()
    sheets = client.get(f"/api/v1/works/{work.pk}/split-sheets").json()
    sheet = client.get(f"/api/v1/split-sheets/{sheets['results'][0]['id']}").json()

    assert [a["id"] for a in assets["results"]] == [asset_id]
    assert (asset["work"], asset["filename"], asset["width"]) == (work.pk, "a.png", 64)
    assert [(s["version"], s["status"]) for s in sheets["results"]] == [(1, "active")]
    assert sheet["shares"] == [
        {
            "email": creator.email,
            "user": creator.username,
            "share_bps": 10000,
            "accepted": True,
            "accepted_at": sheet["shares"][0]["accepted_at"],
        }
    ]


def test_grants_are_listed_for_the_licensee_and_the_licensor_only(as_user) -> None:
    creator, licensee, other = factories.creator(), factories.vendor(), factories.fan()
    offer = factories.offer(creator, factories.work(creator))
    grant = grant_create(offer=offer, user=licensee).grant

    for user in (creator, licensee):
        listed = as_user(user).get("/api/v1/grants").json()
        assert [g["id"] for g in listed["results"]] == [grant.pk]
        detail = as_user(user).get(f"/api/v1/grants/{grant.pk}").json()
        assert (detail["offer_version"], detail["work"], detail["status"]) == (1, offer.work_id, "active")
    assert as_user(other).get("/api/v1/grants").json()["count"] == 0
    assert as_user(licensee).get("/api/v1/grants", {"status": "revoked"}).json()["count"] == 0


def test_an_existing_work_gains_a_parent_and_its_lineage_shows_it(as_user) -> None:
    fan, creator = factories.fan(), factories.creator()
    first = factories.work(creator, title="First")
    second = factories.work(creator, title="Second")
    g1 = grant_create(offer=factories.offer(creator, first, derivative_share_bps=2000), user=fan).grant
    g2 = grant_create(offer=factories.offer(creator, second, derivative_share_bps=1500), user=fan).grant
    work = derivative_create(user=fan, title="Mix", kind="image", parents=[ParentClaim(first.pk, g1.pk)])

    response = as_user(fan).post(
        f"/api/v1/works/{work.pk}/parents", {"parents": [{"work": second.pk, "grant": g2.pk}]}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert [(e["title"], e["share_bps"]) for e in body["stack"]] == [("First", "2000"), ("Second", "1500")]
    assert body["owners_share_bps"] == "6500"
