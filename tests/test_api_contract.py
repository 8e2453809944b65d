"""Walks every operation in the OpenAPI schema: the schema is valid, nobody reads or changes what is not
theirs, and malformed input gets a problem+json 400. New endpoints are covered as soon as they exist."""

from __future__ import annotations

import re
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from accounts.models import ApiKey
from catalog.models import Claim, Grant, Offer, PartnerWebhook, SplitSheet, Watch, Work
from catalog.services import ParentClaim, derivative_create, grant_create, work_withdraw
from tests import factories

pytestmark = pytest.mark.django_db

PUBLIC = {
    ("get", "/api/v1/health"),
    ("get", "/api/v1/offers"),
    ("get", "/api/v1/offers/{offer_id}"),
    ("get", "/api/v1/offers/{offer_id}/rsl"),
}
SECRET = "Zq7-private-marker"


def _schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in _schema()["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def test_the_schema_is_valid_openapi() -> None:
    schema = _schema()
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    assert len(_operations()) >= 25


@pytest.fixture
def world():
    """An owner's private objects, a fan's derivative and a vendor's key: what a stranger probes."""
    owner = factories.creator(email=f"{SECRET.lower()}@example.com")
    fan, vendor = factories.fan(), factories.vendor()
    work = factories.work(owner, title="A public work")
    from catalog.services import asset_upload

    asset = asset_upload(work=work, user=owner, data=factories.png_bytes(), filename=f"{SECRET}.png").asset
    offer = factories.offer(owner, work)
    grant = grant_create(offer=offer, user=fan).grant
    derivative = derivative_create(
        user=fan, title=f"{SECRET} derivative", kind="image", parents=[ParentClaim(work.pk, grant.pk)]
    )
    factories.key(vendor, "read")
    claim = Claim.objects.create(
        work=work, respondent=fan, subject_sha256="0" * 64, match_kind="image", score=40.0, confidence=0.99
    )
    organisation = vendor.organisations.get()
    webhook = PartnerWebhook.objects.create(
        organisation=organisation, url=f"https://example.com/{SECRET}", secret="s"
    )
    watch = Watch.objects.create(
        owner=owner, organisation=organisation, feed_url=f"http://127.0.0.1/{SECRET}"
    )
    hidden = factories.work(owner, title=f"{SECRET} withdrawn")
    hidden_offer = factories.offer(owner, hidden)
    work_withdraw(work=hidden)
    return {
        "owner": owner,
        "ids": {
            "work_id": work.pk,
            "asset_id": asset.pk,
            "sheet_id": SplitSheet.objects.get(work=work).pk,
            "offer_id": hidden_offer.pk,
            "grant_id": grant.pk,
            "key_id": ApiKey.objects.get().pk,
            "claim_id": claim.pk,
            "webhook_id": webhook.pk,
            "watch_id": watch.pk,
            **_studio_ids(fan, grant, derivative),
            **_dataset_ids(owner, vendor, asset),
        },
        "derivative": derivative,
        "counts": lambda: (
            Work.objects.count(),
            Offer.objects.count(),
            Grant.objects.count(),
            SplitSheet.objects.count(),
        ),
    }


def _studio_ids(fan, grant, derivative) -> dict[str, int]:
    """A fan's generation job and withdrawn release (only the fan sees either)."""
    from studio.models import GenerationJob, Release, ReleaseStatus

    job = GenerationJob.objects.create(
        fan=fan, grant=grant, generator="image-restyle", title=SECRET, territory="US", currency="USD"
    )
    release = Release.objects.create(
        work=derivative, released_by=fan, price_minor=100, currency="USD", status=ReleaseStatus.WITHDRAWN
    )
    return {"job_id": job.pk, "release_id": release.pk}


def _dataset_ids(owner, vendor, asset) -> dict[str, int | str]:
    """The owner's closed dataset and its item, and a licence the vendor bought on another dataset's
    snapshot. Snapshots are shown to every signed-in user (vendors browse them to buy), so the probe uses
    one that does not exist; a download token is a signed value, so the probe's is forged."""
    from datasets.models import Dataset, DatasetItem, DatasetLicence, DatasetStatus, Snapshot

    def closed(title: str) -> Dataset:
        return Dataset.objects.create(
            title=title,
            kind="image",
            curator=owner,
            status=DatasetStatus.CLOSED,
            uses=["ai-train"],
            currency="USD",
            price_minor=100,
            created_by=owner,
        )

    dataset = closed(SECRET)
    item = DatasetItem.objects.create(
        dataset=dataset, work=asset.work, asset=asset, sha256=asset.blob.sha256, contributor=owner
    )
    snapshot = Snapshot.objects.create(
        dataset=closed("A sold dataset"),
        number=1,
        terms={},
        terms_version=1,
        currency="USD",
        price_minor=100,
        item_count=0,
        items_sha256="0" * 64,
        created_by=owner,
    )
    licence = DatasetLicence.objects.create(
        organisation=vendor.organisations.get(),
        snapshot=snapshot,
        purchased_by=vendor,
        price_minor=100,
        currency="USD",
        receipt=SECRET,
    )
    return {
        "dataset_id": dataset.pk,
        "item_id": item.pk,
        "licence_id": licence.pk,
        "snapshot_id": 10**9,
        "token": "forged.token",
    }


def _fill(path: str, ids: dict[str, int]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), path)


def _call(client, method: str, url: str, body: Any = None):
    if method == "get":
        return client.get(url)
    return getattr(client, method)(url, body if body is not None else {}, format="json")


def test_anonymous_callers_get_401_except_on_the_public_catalogue(api, world) -> None:
    for method, path, _ in _operations():
        response = _call(api, method, _fill(path, world["ids"]))
        if (method, path) in PUBLIC:
            assert response.status_code in (200, 404), (method, path)
        else:
            assert response.status_code == 401, (method, path, response.status_code)
            assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("role", ["creator", "fan", "vendor"])
def test_a_stranger_of_every_role_can_neither_see_nor_touch_the_owners_objects(as_user, world, role) -> None:
    stranger = {"creator": factories.creator, "fan": factories.fan, "vendor": factories.vendor}[role]()
    client = as_user(stranger)
    before = world["counts"]()
    hidden_bodies = {
        "/api/v1/grants": {"offer": world["ids"]["offer_id"]},
        "/api/v1/derivatives": {
            "title": "x",
            "kind": "image",
            "parents": [{"work": world["ids"]["work_id"], "grant": world["ids"]["grant_id"]}],
        },
        "/api/v1/split-invitations/accept": {"token": "not-a-real-token"},
    }
    for method, path, _ in _operations():
        url = _fill(path, world["ids"])
        response = _call(client, method, url, hidden_bodies.get(path))
        assert SECRET not in response.content.decode(), (method, path)
        if "{" in path or (method != "get" and path in hidden_bodies):
            assert response.status_code in (403, 404), (method, path, response.status_code)
        else:
            assert response.status_code < 500, (method, path)
    after = world["counts"]()
    assert after[2:] == before[2:]  # no grant or split sheet was made on the owner's objects


def test_the_owner_cannot_reach_the_fans_derivative_lineage_or_the_vendors_key(as_user, world) -> None:
    client = as_user(world["owner"])
    assert client.get(f"/api/v1/works/{world['derivative'].pk}/lineage").status_code == 404
    assert client.post(f"/api/v1/api-keys/{world['ids']['key_id']}/revoke").status_code == 404


def test_every_operation_with_a_body_answers_malformed_input_with_a_problem_400(as_user, world) -> None:
    client = as_user(world["owner"])
    before = world["counts"]()
    checked = 0
    for method, path, operation in _operations():
        if "requestBody" not in operation or method == "get":
            continue
        url = _fill(path, world["ids"])
        if "multipart/form-data" in operation["requestBody"]["content"]:
            response = client.post(url, {"file": "not a file"}, format="multipart")
        else:
            response = client.generic(method.upper(), url, b'{"unterminated', content_type="application/json")
        checked += 1
        assert response.status_code in (400, 403, 404, 409, 415), (
            method,
            path,
            response.status_code,
            response.content,
        )
        if response.status_code == 400:
            assert response["Content-Type"] == "application/problem+json"
            assert response.json()["code"] in {"malformed_request", "validation_error"}
    assert checked >= 10
    assert world["counts"]() == before
