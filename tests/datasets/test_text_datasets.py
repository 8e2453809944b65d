"""Text datasets: articles and lyrics of three creators gathered, curated (exact and near-duplicate texts
collapsed), snapshotted with each item's text version and token count, sold with the price split by
tokens exactly, and delivered to the licensee only as JSONL shards whose records carry licence and
provenance and whose hashes match the manifest."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
from django.core.files.storage import default_storage

from access import receipts, signing
from accounts.services import api_key_create
from catalog.models import Asset, Work
from catalog.services import asset_upload
from catalog.tasks import fingerprint_asset
from datasets import delivery
from datasets.models import (
    Dataset,
    DatasetItem,
    DatasetLicence,
    DownloadLog,
    ItemStatus,
    SaleShare,
    Snapshot,
    SnapshotItem,
)
from datasets.services import opt_outs
from media.text import passages
from royalties.ledger import ledger_check
from royalties.models import RevenueItem
from royalties.settlement import revenue_settle
from tests import factories
from tests.datasets.conftest import funded, register
from tests.royalties.builders import payable
from tests.text import samples
from tests.text.test_text_tracing import register_text

pytestmark = pytest.mark.django_db

TRAINING_TERMS: dict[str, Any] = {"uses": {"ai-train": 5}, "token_prices": {"ai-train": 2}}
PRICE_MINOR = 10_007
CURATOR_BPS = 1_000


def _path(url: str) -> str:
    return url.split("testserver", 1)[-1].split("8000", 1)[-1]


@pytest.fixture
def library(as_user):
    """Three creators' texts (an article, lyrics, an essay-like article) and a curator's text dataset that
    weighs by tokens."""
    writer, poet, essayist, curator = (factories.creator() for _ in range(4))
    harbour = register_text(writer, samples.ARTICLE, title="Harbour", **TRAINING_TERMS)
    lantern = register_text(poet, samples.LYRICS, title="Lantern", kind="lyrics", **TRAINING_TERMS)
    sheets = register_text(essayist, samples.OTHER, title="Spreadsheets", **TRAINING_TERMS)
    created = as_user(curator).post(
        "/api/v1/datasets",
        {
            "title": "Coastal prose",
            "kind": "text",
            "price_minor": PRICE_MINOR,
            "weighting": "tokens",
            "curator_share_bps": CURATOR_BPS,
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    return {
        "writer": writer,
        "poet": poet,
        "essayist": essayist,
        "curator": curator,
        "works": [harbour, lantern, sheets],
        "dataset": created.json()["id"],
    }


def _contribute_all(library, as_user) -> list[dict]:
    joined = []
    owners = (library["writer"], library["poet"], library["essayist"])
    for owner, work in zip(owners, library["works"], strict=True):
        response = as_user(owner).post(
            f"/api/v1/datasets/{library['dataset']}/items", {"work": work.pk}, format="json"
        )
        assert response.status_code == 201, response.json()
        joined.extend(response.json())
    return joined


@pytest.fixture
def sold(library, as_user, with_key):
    _contribute_all(library, as_user)
    cut = as_user(library["curator"]).post(f"/api/v1/datasets/{library['dataset']}/snapshots")
    assert cut.status_code == 201, cut.json()
    vendor = factories.vendor()
    organisation = funded(vendor, 50_000)
    client = with_key(
        api_key_create(user=vendor, name="buyer", scopes=["read", "access"], organisation=organisation).secret
    )
    bought = client.post(f"/api/v1/dataset-snapshots/{cut.json()['id']}/licences", {}, format="json")
    assert bought.status_code == 201, bought.json()
    return library | {
        "snapshot": cut.json(),
        "vendor": vendor,
        "organisation": organisation,
        "client": client,
        "licence": bought.json(),
    }


def _texts(works: list[Work]) -> list[str]:
    return [work.text_versions.get().text for work in works]


def test_text_items_record_their_text_version_and_tokens_counted_by_the_retrieval_tokenizer(library, as_user):
    joined = _contribute_all(library, as_user)
    expected = passages.count_tokens(_texts(library["works"]))

    assert [(item["status"], item["text_version"], item["tokens"]) for item in joined] == [
        ("included", 1, expected[0]),
        ("included", 1, expected[1]),
        ("included", 1, expected[2]),
    ]
    # Real prose: an article of 263 words, lyrics of 86, a paragraph of 90 (WordPiece splits more).
    assert expected == [297, 96, 106]
    assert [item["text_sha256"] for item in joined] == [
        hashlib.sha256(text.encode()).hexdigest() for text in _texts(library["works"])
    ]


def test_a_snapshot_sold_to_a_vendor_splits_the_price_by_tokens_exactly(sold):
    snapshot = Snapshot.objects.get(pk=sold["snapshot"]["id"])
    entries = list(SnapshotItem.objects.filter(snapshot=snapshot).select_related("text_version"))
    licence = DatasetLicence.objects.get(licence_id=sold["licence"]["licence_id"])

    assert snapshot.tokenizer == passages.TOKENIZER_NAME == sold["snapshot"]["tokenizer"]
    assert [(e.work_id, e.text_version.version, e.tokens, e.weight) for e in entries] == [
        (sold["works"][0].pk, 1, 297, 297),
        (sold["works"][1].pk, 1, 96, 96),
        (sold["works"][2].pk, 1, 106, 106),
    ]
    assert snapshot.total_tokens == 499
    # 10,007 minor units: the curator's 10% is 1,000.7; the other 9,006.3 go by tokens 297 : 96 : 106,
    # 5,360.463..., 1,732.675..., 1,913.162... The floors sum to 10,005; the two largest remainders
    # (the curator's .7 and the lyrics' .675) take the two units left.
    shares = {share.work_id: share.amount_minor for share in SaleShare.objects.filter(licence=licence)}
    assert shares == {
        None: 1_001,
        sold["works"][0].pk: 5_360,
        sold["works"][1].pk: 1_733,
        sold["works"][2].pk: 1_913,
    }
    assert sum(shares.values()) == PRICE_MINOR == licence.price_minor
    revenue = {
        item.source_key: item.amount_minor
        for item in RevenueItem.objects.filter(source_key__startswith=f"dataset:{licence.licence_id}:")
    }
    assert sorted(revenue.values()) == [1_733, 1_913, 5_360]
    # Settlement splits each work's part as any revenue: the platform's 10% fee, then the owners.
    assert revenue_settle().items == 3
    owners = (sold["writer"], sold["poet"], sold["essayist"], sold["curator"])
    assert [payable(user) for user in owners] == [4_824, 1_560, 1_722, 1_001]
    assert ledger_check().clean
    claims = receipts.verify(licence.receipt, signing.public_keys())
    assert (claims["tokenizer"], claims["total_tokens"], claims["items_sha256"]) == (
        passages.TOKENIZER_NAME,
        499,
        snapshot.items_sha256,
    )


def test_the_licensee_downloads_jsonl_shards_with_licence_and_provenance_matching_the_manifest(
    library, as_user, with_key, settings
):
    settings.DATASET_SHARD_ITEMS = 2  # three records: shards of 2 and 1
    _contribute_all(library, as_user)
    cut = as_user(library["curator"]).post(f"/api/v1/datasets/{library['dataset']}/snapshots").json()
    vendor = factories.vendor()
    organisation = funded(vendor, 50_000)
    client = with_key(
        api_key_create(user=vendor, name="buyer", scopes=["read", "access"], organisation=organisation).secret
    )
    licence = client.post(f"/api/v1/dataset-snapshots/{cut['id']}/licences", {}, format="json").json()
    links = {
        link["part"]: _path(link["url"])
        for link in client.get(f"/api/v1/dataset-licences/{licence['id']}/links").json()
    }

    manifest_response = client.get(links["manifest"])
    manifest = manifest_response.json()
    shards = {
        part: b"".join(client.get(url).streaming_content) for part, url in links.items() if part != "manifest"
    }

    assert manifest_response["Content-Type"] == "application/json"
    assert sorted(links) == ["manifest", "shard-00000", "shard-00001"]
    assert [(s["name"], s["records"]) for s in manifest["shards"]] == [
        ("shard-00000.jsonl", 2),
        ("shard-00001.jsonl", 1),
    ]
    for index, shard in enumerate(manifest["shards"]):
        body = shards[f"shard-{index:05d}"]
        assert hashlib.sha256(body).hexdigest() == shard["sha256"] and len(body) == shard["bytes"]
    assert manifest["licence"]["licence_id"] == licence["licence_id"]
    assert manifest["snapshot"]["items_sha256"] == cut["items_sha256"]
    assert manifest["snapshot"]["tokenizer"] == passages.TOKENIZER_NAME
    records = [json.loads(line) for part in sorted(shards) for line in shards[part].decode().splitlines()]
    works, texts = library["works"], _texts(library["works"])
    owners = (library["writer"], library["poet"], library["essayist"])
    assert [r["work"] for r in records] == [work.pk for work in works]
    for record, work, text, owner in zip(records, works, texts, owners, strict=True):
        asset = Asset.objects.select_related("blob").get(work=work)
        with default_storage.open(asset.blob.storage_name, "rb") as handle:
            original = handle.read()
        offer = work.offers.get()
        assert record["id"] == f"{library['dataset']}-1-{record['position']:06d}"
        assert (record["title"], record["text_version"], record["text"]) == (work.title, 1, text)
        assert record["tokens"] == passages.count_tokens([text])[0]
        assert record["tokenizer"] == passages.TOKENIZER_NAME
        assert record["licence"]["offer"] == offer.pk
        assert record["licence"]["offer_version"] == offer.version
        assert record["licence"]["uses"] == ["ai-train"]
        assert record["licence"]["owners"] == [{"name": owner.public_name, "share_bps": 10_000}]
        assert record["licence"]["attribution"].startswith(f"“{work.title}” by {owner.public_name}")
        assert record["provenance"]["original_sha256"] == hashlib.sha256(original).hexdigest()
        assert record["provenance"]["text_sha256"] == hashlib.sha256(text.encode()).hexdigest()
        assert record["provenance"]["snapshot"] == cut["id"]
        assert record["provenance"]["items_sha256"] == cut["items_sha256"]
    assert list(DownloadLog.objects.order_by("id").values_list("part", "refused")) == [
        ("manifest", ""),
        ("shard-00000", ""),
        ("shard-00001", ""),
    ]


def test_a_shard_closes_at_the_byte_cap_and_a_record_over_it_stands_alone(library, as_user, settings):
    _contribute_all(library, as_user)
    cut = as_user(library["curator"]).post(f"/api/v1/datasets/{library['dataset']}/snapshots").json()
    snapshot = Snapshot.objects.get(pk=cut["id"])
    entries = list(SnapshotItem.objects.filter(snapshot=snapshot).select_related("blob", "text_version"))
    article, lyrics, essay = (len(delivery.record_line(entry, snapshot)) for entry in entries)

    settings.DATASET_TEXT_SHARD_BYTES = lyrics + essay  # the lyrics and the essay just fit together
    paired = delivery.text_shard_layout(snapshot=snapshot, entries=entries)
    settings.DATASET_TEXT_SHARD_BYTES = lyrics - 1  # every record is over it
    alone = delivery.text_shard_layout(snapshot=snapshot, entries=entries)

    assert [(s["first"], s["last"], s["records"]) for s in cut["shards"]] == [(0, 2, 3)]
    assert [(s["first"], s["last"], s["bytes"]) for s in paired] == [
        (0, 0, article),
        (1, 2, lyrics + essay),
    ]
    assert [(s["first"], s["last"], s["bytes"]) for s in alone] == [
        (0, 0, article),
        (1, 1, lyrics),
        (2, 2, essay),
    ]


def test_a_stranger_and_an_expired_link_cannot_download(sold, with_key, monkeypatch):
    links = {
        link["part"]: _path(link["url"])
        for link in sold["client"].get(f"/api/v1/dataset-licences/{sold['licence']['id']}/links").json()
    }
    stranger = factories.vendor(organisation_name="Rival AI")
    stranger_client = with_key(api_key_create(user=stranger, name="k", scopes=["read"]).secret)

    foreign = stranger_client.get(links["shard-00000"])
    later = time.time() + delivery.link_ttl_s() + 1
    monkeypatch.setattr("django.core.signing.time.time", lambda: later)
    expired = sold["client"].get(links["shard-00000"])

    assert foreign.status_code == 403 and foreign.json()["code"] == "link_foreign"
    assert expired.status_code == 403 and expired.json()["code"] == "link_expired"
    assert list(DownloadLog.objects.order_by("id").values_list("part", "refused")) == [
        ("shard-00000", "foreign"),
        ("shard-00000", "expired"),
    ]
    own_licences = stranger_client.get(f"/api/v1/dataset-licences/{sold['licence']['id']}/links")
    assert own_licences.status_code == 404


def test_an_unknown_weighting_and_tokens_on_a_media_dataset_are_refused(as_user):
    curator = factories.creator()
    client = as_user(curator)
    base = {"title": "Prose", "kind": "text", "price_minor": 1_000}

    unknown = client.post("/api/v1/datasets", base | {"weighting": "words"}, format="json")
    on_images = client.post(
        "/api/v1/datasets", base | {"kind": "image", "weighting": "tokens"}, format="json"
    )

    assert unknown.status_code == 400 and "weighting" in json.dumps(unknown.json())
    assert on_images.status_code == 400 and on_images.json()["code"] == "invalid_weighting"
    assert Dataset.objects.count() == 0


def test_a_media_work_offered_to_a_text_dataset_and_a_text_work_to_an_image_dataset_are_refused(
    library, photos, as_user
):
    writer = library["writer"]
    photo = register(writer, photos["Garden"], title="Garden")
    images = as_user(library["curator"]).post(
        "/api/v1/datasets",
        {"title": "Photos", "kind": "image", "price_minor": 1_000},
        format="json",
    )

    photo_to_text = as_user(writer).post(
        f"/api/v1/datasets/{library['dataset']}/items", {"work": photo.pk}, format="json"
    )
    text_to_images = as_user(writer).post(
        f"/api/v1/datasets/{images.json()['id']}/items", {"work": library["works"][0].pk}, format="json"
    )

    assert photo_to_text.status_code == 403 and photo_to_text.json()["code"] == "wrong_kind"
    assert text_to_images.status_code == 403 and text_to_images.json()["code"] == "wrong_kind"
    assert DatasetItem.objects.count() == 0


def test_exact_and_near_duplicate_texts_are_left_out_pointing_at_the_kept_item(library, as_user):
    writer = library["writer"]
    harbour = library["works"][0]
    # The same text with Windows line ends (other bytes, the same normalised text), and a lightly edited
    # copy: two words changed, one sentence dropped.
    windows = register_text(
        writer, samples.ARTICLE.replace("\n", "\r\n"), title="Harbour (Windows)", **TRAINING_TERMS
    )
    edited_text = (
        samples.ARTICLE.replace("Old Tomas", "Old Tomás")
        .replace("forty years", "fifty years")
        .replace("Nobody said anything for a long time. ", "")
    )
    edited = register_text(writer, edited_text, title="Harbour (edited)", **TRAINING_TERMS)
    client = as_user(writer)
    url = f"/api/v1/datasets/{library['dataset']}/items"

    kept = client.post(url, {"work": harbour.pk}, format="json").json()[0]
    exact = client.post(url, {"work": windows.pk}, format="json").json()[0]
    near = client.post(url, {"work": edited.pk}, format="json").json()[0]
    other = as_user(library["poet"]).post(url, {"work": library["works"][1].pk}, format="json").json()[0]

    assert exact["sha256"] != kept["sha256"] and exact["text_sha256"] == kept["text_sha256"]
    assert (exact["status"], exact["reason_code"], exact["duplicate_of"]) == (
        "excluded",
        "near_duplicate",
        kept["id"],
    )
    assert (near["status"], near["reason_code"], near["duplicate_of"]) == (
        "excluded",
        "near_duplicate",
        kept["id"],
    )
    assert exact["reason"].startswith(f"An exact copy of item #{kept['id']}")
    assert near["reason"].startswith(
        f"A near-duplicate (92% of their 3-word shingles in common) of item #{kept['id']}"
    )
    assert other["status"] == "included"
    assert set(DatasetItem.objects.filter(status=ItemStatus.INCLUDED).values_list("work_id", flat=True)) == {
        harbour.pk,
        library["works"][1].pk,
    }


def test_an_opted_out_text_and_a_withdrawn_consent_leave_the_next_snapshot(library, as_user):
    from catalog.consent import consent_withdraw

    _contribute_all(library, as_user)
    harbour, lantern, sheets = library["works"]
    opt_outs.training_opt_out_set(user=library["writer"], work=harbour)
    consent_withdraw(work=lantern, user=library["poet"], use_class="ai-train")

    cut = as_user(library["curator"]).post(f"/api/v1/datasets/{library['dataset']}/snapshots").json()

    assert cut["item_count"] == 1 and cut["total_tokens"] == 106
    assert list(SnapshotItem.objects.values_list("work_id", flat=True)) == [sheets.pk]
    statuses = dict(DatasetItem.objects.values_list("work_id", "reason_code"))
    assert statuses == {harbour.pk: "do_not_train", lantern.pk: "consent_withdrawn", sheets.pk: ""}


def test_a_second_text_version_uploaded_later_is_not_in_the_snapshot_already_cut(sold):
    harbour = sold["works"][0]
    asset_upload(
        work=harbour,
        user=sold["writer"],
        data=(samples.ARTICLE + "\n\nUpdated: the boats were repaired by the end of the week.").encode(),
        filename="Harbour.txt",
    )
    fingerprint_asset(Asset.objects.filter(work=harbour).order_by("-id").first().pk)

    entry = SnapshotItem.objects.get(snapshot_id=sold["snapshot"]["id"], work=harbour)

    assert harbour.text_versions.count() == 2
    assert entry.text_version.version == 1 and entry.tokens == 297
