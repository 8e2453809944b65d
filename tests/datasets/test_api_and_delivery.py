"""The HTTP API end to end with API keys, and delivery through signed links (tar shards + manifest)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time

import pytest
from django.core import signing

from accounts.services import api_key_create
from datasets import delivery
from datasets.models import DownloadLog
from tests import factories
from tests.datasets.conftest import funded, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def sold(photos, as_user, with_key):
    mira, sol, curator, vendor = (
        factories.creator(),
        factories.creator(),
        factories.creator(),
        factories.vendor(),
    )
    garden = register(mira, photos["Garden"], title="Garden")
    wood = register(sol, photos["Wood"], title="Wood")
    created = as_user(curator).post(
        "/api/v1/datasets",
        {
            "title": "Photos",
            "kind": "image",
            "price_minor": 4_000,
            "commercial_use": True,
            "curator_share_bps": 500,
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    dataset_id = created.json()["id"]
    for owner, work in ((mira, garden), (sol, wood)):
        joined = as_user(owner).post(f"/api/v1/datasets/{dataset_id}/items", {"work": work.pk}, format="json")
        assert joined.status_code == 201, joined.json()
        assert [item["status"] for item in joined.json()] == ["included"]
    cut = as_user(curator).post(f"/api/v1/datasets/{dataset_id}/snapshots")
    assert cut.status_code == 201, cut.json()
    organisation = funded(vendor, 10_000)
    secret = api_key_create(
        user=vendor, name="buyer", scopes=["read", "access"], organisation=organisation
    ).secret
    return {
        "mira": mira,
        "sol": sol,
        "curator": curator,
        "vendor": vendor,
        "dataset": dataset_id,
        "snapshot": cut.json()["id"],
        "client": with_key(secret),
        "organisation": organisation,
        "works": [garden, wood],
    }


def test_a_vendor_buys_with_its_key_and_the_same_purchase_again_returns_the_same_licence(sold):
    client = sold["client"]

    bought = client.post(f"/api/v1/dataset-snapshots/{sold['snapshot']}/licences", {}, format="json")
    again = client.post(f"/api/v1/dataset-snapshots/{sold['snapshot']}/licences", {}, format="json")
    listed = client.get("/api/v1/dataset-licences")

    assert bought.status_code == 201 and again.status_code == 200
    assert bought.json()["licence_id"] == again.json()["licence_id"]
    assert bought.json()["price_minor"] == 4_000 and bought.json()["items"] == 2
    assert listed.json()["count"] == 1


def test_a_short_balance_answers_402_with_the_price_and_balance(sold, with_key):
    poor_vendor = factories.vendor(organisation_name="Poor AI")
    organisation = funded(poor_vendor, 100, "poor")
    secret = api_key_create(
        user=poor_vendor, name="k", scopes=["read", "access"], organisation=organisation
    ).secret

    refused = with_key(secret).post(
        f"/api/v1/dataset-snapshots/{sold['snapshot']}/licences", {}, format="json"
    )

    assert refused.status_code == 402
    assert refused["Content-Type"] == "application/problem+json"
    body = refused.json()
    assert (body["code"], body["price_minor"], body["balance_minor"]) == ("insufficient_funds", 4_000, 100)
    assert body["top_up_url"].endswith("/dashboard/balance/")


def test_a_key_without_the_access_scope_cannot_buy(sold, with_key):
    secret = api_key_create(
        user=sold["vendor"], name="ro", scopes=["read"], organisation=sold["organisation"]
    ).secret

    refused = with_key(secret).post(
        f"/api/v1/dataset-snapshots/{sold['snapshot']}/licences", {}, format="json"
    )

    assert refused.status_code == 403 and refused.json()["code"] == "organisation_key_required"


def test_contributors_see_their_items_sales_and_earnings_and_not_others_items(sold, as_user):
    sold["client"].post(f"/api/v1/dataset-snapshots/{sold['snapshot']}/licences", {}, format="json")

    rows = as_user(sold["mira"]).get("/api/v1/dataset-contributions").json()
    items = as_user(sold["mira"]).get(f"/api/v1/datasets/{sold['dataset']}/items").json()

    # 4,000 less the 5% curator share is 3,800, shared by two works.
    assert [
        (r["dataset"], r["items"], r["included"], r["snapshots_sold"], r["earned_minor"]) for r in rows
    ] == [(sold["dataset"], 1, 1, 1, 1_900)]
    assert items["count"] == 2  # both included items are public; excluded ones only to their owner
    assert as_user(factories.creator()).get("/api/v1/dataset-contributions").json() == []


def test_only_the_contributor_opts_an_item_out(sold, as_user):
    items = as_user(sold["mira"]).get(f"/api/v1/datasets/{sold['dataset']}/items").json()["results"]
    sols = next(item for item in items if item["work"] == sold["works"][1].pk)

    assert as_user(sold["mira"]).post(f"/api/v1/dataset-items/{sols['id']}/opt-out").status_code == 404
    opted = as_user(sold["sol"]).post(f"/api/v1/dataset-items/{sols['id']}/opt-out")
    assert opted.status_code == 200 and opted.json()["status"] == "opted_out"


def test_only_the_curator_cuts_snapshots_over_the_api(sold, as_user):
    refused = as_user(sold["mira"]).post(f"/api/v1/datasets/{sold['dataset']}/snapshots")

    assert refused.status_code == 404 and refused.json()["code"] == "dataset_not_found"


def _links(sold):
    licence = (
        sold["client"]
        .post(f"/api/v1/dataset-snapshots/{sold['snapshot']}/licences", {}, format="json")
        .json()
    )
    links = sold["client"].get(f"/api/v1/dataset-licences/{licence['id']}/links").json()
    return licence, {
        link["part"]: link["url"].split("testserver", 1)[-1].split("8000", 1)[-1] for link in links
    }


def test_the_manifest_and_shard_download_through_signed_links_and_are_logged(sold):
    licence, links = _links(sold)

    manifest = sold["client"].get(links["manifest"])
    shard = sold["client"].get(links["shard-00000"])

    assert manifest.status_code == 200 and shard.status_code == 200
    lines = [json.loads(line) for line in manifest.content.decode().splitlines()]
    assert [line["work"] for line in lines] == [work.pk for work in sold["works"]]
    assert lines[0]["licence"]["licence_id"] == licence["licence_id"]
    assert lines[0]["attribution"].startswith("“Garden” by ")
    assert lines[0]["owners"] == [{"name": sold["mira"].public_name, "share_bps": 10_000}]
    with tarfile.open(fileobj=io.BytesIO(b"".join(shard.streaming_content))) as archive:
        names = archive.getnames()
        media = {name: archive.extractfile(name).read() for name in names if not name.endswith(".json")}
    assert names == ["000000.jpg", "000000.json", "000001.jpg", "000001.json"]
    assert [hashlib.sha256(media[line["file"]]).hexdigest() for line in lines] == [
        line["sha256"] for line in lines
    ]
    assert list(DownloadLog.objects.order_by("id").values_list("part", "refused")) == [
        ("manifest", ""),
        ("shard-00000", ""),
    ]


def test_an_expired_link_is_refused_and_logged(sold, monkeypatch):
    _, links = _links(sold)
    later = time.time() + delivery.link_ttl_s() + 1
    monkeypatch.setattr("django.core.signing.time.time", lambda: later)

    refused = sold["client"].get(links["manifest"])

    assert refused.status_code == 403 and refused.json()["code"] == "link_expired"
    assert list(DownloadLog.objects.values_list("part", "refused")) == [("manifest", "expired")]


def test_a_link_used_by_another_organisation_is_refused(sold, with_key):
    _, links = _links(sold)
    rival = factories.vendor(organisation_name="Rival AI")
    secret = api_key_create(user=rival, name="k", scopes=["read"]).secret

    refused = with_key(secret).get(links["shard-00000"])

    assert refused.status_code == 403 and refused.json()["code"] == "link_foreign"
    assert list(DownloadLog.objects.values_list("part", "refused")) == [("shard-00000", "foreign")]


def test_an_altered_link_is_refused(sold):
    _, links = _links(sold)
    token = links["manifest"].rstrip("/").rsplit("/", 1)[1]
    forged = signing.dumps({"l": 1, "p": "manifest", "o": 999}, salt="another-salt", compress=True)

    assert (
        sold["client"].get(links["manifest"].replace(token, token[:-2] + "xx")).json()["code"]
        == "link_invalid"
    )
    assert sold["client"].get(f"/api/v1/dataset-downloads/{forged}").json()["code"] == "link_invalid"
