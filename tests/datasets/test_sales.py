"""Selling snapshots: one transaction, exact pro-rata splits, signed receipts, settlement up the chain."""

from __future__ import annotations

import hashlib
from fractions import Fraction

import pytest
from django.db.models import Sum

from access import receipts
from accounts.models import Role, User
from catalog import fingerprinting
from catalog.models import Asset, Blob
from catalog.services import ParentClaim, derivative_create, grant_create, work_create
from common import clock
from common.problems import ApiError
from datasets.models import Dataset, DatasetItem, DatasetLicence, SaleShare
from datasets.services import contributing, sales, snapshots
from royalties import selectors as ledger
from royalties.ledger import InsufficientFunds, ledger_check
from royalties.models import RevenueItem, RevenueSource
from royalties.settlement import revenue_settle
from tests import factories
from tests.datasets.conftest import dataset, funded, publish, register
from tests.royalties.builders import payable

pytestmark = pytest.mark.django_db


def _contributors(count: int, curator: User) -> tuple[Dataset, list[User]]:
    """`count` creators, each with one published work holding one stored file, all in one dataset.

    Built with bulk inserts for the users, files and items (the split is what is under test here; the
    curation of real media has its own tests), and the catalog's services for works and terms.
    """
    users = User.objects.bulk_create(
        [
            User(
                username=f"c{i:04d}",
                email=f"c{i:04d}@example.com",
                role=Role.CREATOR,
                email_verified_at=clock.now(),
            )
            for i in range(count)
        ]
    )
    photo_set = dataset(curator, price_minor=1_000_003, curator_share_bps=1_250)
    blobs, works = [], []
    for index, user in enumerate(users):
        work = work_create(user=user, title=f"Photo {index}", kind="image")
        publish(user, work, uses={"ai-train": 1})
        sha = hashlib.sha256(f"photo {index}".encode()).hexdigest()
        blobs.append(
            Blob(sha256=sha, size_bytes=1, media_type="image/jpeg", kind="image", storage_name=f"x/{sha}")
        )
        works.append(work)
    Blob.objects.bulk_create(blobs)
    assets = Asset.objects.bulk_create(
        [
            Asset(work=w, blob=b, filename="p.jpg", uploaded_by=u)
            for w, b, u in zip(works, blobs, users, strict=True)
        ]
    )
    DatasetItem.objects.bulk_create(
        [
            DatasetItem(dataset=photo_set, work=w, asset=a, sha256=a.blob_id, contributor=u)
            for w, a, u in zip(works, assets, users, strict=True)
        ]
    )
    return photo_set, users


def test_a_sale_splits_exactly_across_1000_contributors_and_settles_up_to_each_payee():
    curator, vendor = factories.creator(), factories.vendor()
    photo_set, users = _contributors(1_000, curator)
    snapshot = snapshots.snapshot_create(dataset=photo_set, user=curator)
    organisation = funded(vendor, 2_000_000)

    purchase = sales.licence_purchase(snapshot=snapshot, organisation=organisation, user=vendor)

    price = 1_000_003
    shares = list(SaleShare.objects.filter(licence=purchase.licence))
    assert len(shares) == 1_001
    assert sum(share.amount_minor for share in shares) == price
    curator_part = next(share for share in shares if share.work_id is None)
    assert abs(curator_part.amount_minor - Fraction(price * 1_250, 10_000)) < 1
    exact = Fraction(price * (10_000 - 1_250), 10_000 * 1_000)
    work_parts = [share.amount_minor for share in shares if share.work_id is not None]
    assert all(abs(part - exact) < 1 for part in work_parts)
    assert {share.contributor_id for share in shares if share.work_id} == {user.pk for user in users}
    items = RevenueItem.objects.filter(source=RevenueSource.DATASET)
    assert items.count() == 1_000
    assert items.aggregate(total=Sum("amount_minor"))["total"] == price - curator_part.amount_minor
    assert ledger.prepaid_available(organisation=organisation, currency="USD") == 2_000_000 - price

    revenue_settle()

    assert ledger_check().clean
    payable = {
        row["account__user"]: row["total"]
        for row in ledger.Entry.objects.filter(account__kind="payable", source=RevenueSource.DATASET)
        .values("account__user")
        .annotate(total=Sum("amount_minor"))
    }
    assert payable[curator.pk] == curator_part.amount_minor
    fee = ledger.platform_fee_total(currency="USD")
    assert sum(payable.values()) + fee == price
    # Each contributor gets their part less the 10% platform fee, within one unit of exact.
    for share in shares:
        if share.work_id is not None:
            assert share.contributor_id is not None
            assert abs(payable[share.contributor_id] - Fraction(share.amount_minor * 9, 10)) < 1


@pytest.fixture
def small_world(photos):
    mira, sol, curator, vendor = (
        factories.creator(),
        factories.creator(),
        factories.creator(),
        factories.vendor(),
    )
    garden = register(mira, photos["Garden"], title="Garden")
    wood = register(sol, photos["Wood"], title="Wood")
    photo_set = dataset(curator, price_minor=10_001, curator_share_bps=1_000)
    contributing.item_contribute(dataset=photo_set, user=mira, work=garden)
    contributing.item_contribute(dataset=photo_set, user=sol, work=wood)
    snapshot = snapshots.snapshot_create(dataset=photo_set, user=curator)
    return {
        "mira": mira,
        "sol": sol,
        "curator": curator,
        "vendor": vendor,
        "snapshot": snapshot,
        "garden": garden,
        "wood": wood,
    }


def test_buying_returns_a_receipt_that_verifies_with_the_published_key(small_world, client):
    vendor, snapshot = small_world["vendor"], small_world["snapshot"]
    organisation = funded(vendor, 50_000)

    purchase = sales.licence_purchase(snapshot=snapshot, organisation=organisation, user=vendor)
    again = sales.licence_purchase(snapshot=snapshot, organisation=organisation, user=vendor)

    assert purchase.created and not again.created and again.licence.pk == purchase.licence.pk
    assert DatasetLicence.objects.count() == 1
    assert ledger.prepaid_available(organisation=organisation, currency="USD") == 50_000 - 10_001
    jwks = client.get("/.well-known/jwks.json").json()["keys"]
    from jwt.algorithms import OKPAlgorithm

    keys = [OKPAlgorithm.from_jwk(key) for key in jwks]
    claims = receipts.verify(purchase.licence.receipt, keys)  # type: ignore[arg-type]
    assert claims["jti"] == str(purchase.licence.licence_id)
    assert claims["typ"] == "dataset-licence"
    assert (claims["snapshot"], claims["items"], claims["items_sha256"]) == (
        snapshot.pk,
        2,
        snapshot.items_sha256,
    )
    assert (claims["price_minor"], claims["currency"]) == (10_001, "USD")
    tampered = purchase.licence.receipt[:-4] + (
        "AAAA" if not purchase.licence.receipt.endswith("AAAA") else "BBBB"
    )
    with pytest.raises(receipts.InvalidReceipt):
        receipts.verify(tampered, keys)  # type: ignore[arg-type]


def test_a_short_balance_refuses_the_sale_and_changes_nothing(small_world):
    vendor, snapshot = small_world["vendor"], small_world["snapshot"]
    organisation = funded(vendor, 10_000)  # one unit short

    with pytest.raises(InsufficientFunds):
        sales.licence_purchase(snapshot=snapshot, organisation=organisation, user=vendor)

    assert not DatasetLicence.objects.exists()
    assert not SaleShare.objects.exists()
    assert not RevenueItem.objects.exists()
    assert ledger.prepaid_available(organisation=organisation, currency="USD") == 10_000


def test_a_vendor_buys_only_for_its_own_organisation(small_world):
    organisation = funded(small_world["vendor"], 50_000)
    stranger = factories.vendor(organisation_name="Other AI")

    with pytest.raises(ApiError) as refused:
        sales.licence_purchase(snapshot=small_world["snapshot"], organisation=organisation, user=stranger)

    assert refused.value.problem_code == "organisation_not_found"
    assert ledger.prepaid_available(organisation=organisation, currency="USD") == 50_000


def test_a_derivative_in_a_dataset_pays_its_parent_through_settlement(photos):
    mira, kai, curator, vendor = (
        factories.creator(),
        factories.creator(),
        factories.creator(),
        factories.vendor(),
    )
    garden = register(
        mira,
        photos["Garden"],
        title="Garden",
        uses={"ai-train": 5, "derivative": 0},
        derivative_share_bps=4_000,
    )
    grant = grant_create(offer=garden.offers.get(), user=kai).grant
    remix = derivative_create(
        user=kai, title="Garden at night", kind="image", parents=[ParentClaim(garden.pk, grant.pk)]
    )
    from catalog.services import asset_upload

    asset = asset_upload(work=remix, user=kai, data=photos["RainDrops"], filename="night.jpg").asset
    fingerprinting.asset_fingerprint(asset_id=asset.pk)
    publish(kai, remix)
    photo_set = dataset(curator, price_minor=10_000)
    contributing.item_contribute(dataset=photo_set, user=kai, work=remix)
    snapshot = snapshots.snapshot_create(dataset=photo_set, user=curator)
    organisation = funded(vendor, 10_000)

    sales.licence_purchase(snapshot=snapshot, organisation=organisation, user=vendor)
    revenue_settle()

    # 10,000 less the 10% fee is 9,000: the parent takes 40% of it, Kai keeps 60%.
    earned = {
        row["account__user"]: row["total"]
        for row in ledger.Entry.objects.filter(account__kind="payable")
        .values("account__user")
        .annotate(total=Sum("amount_minor"))
    }
    assert earned == {mira.pk: 3_600, kai.pk: 5_400}
    assert ledger_check().clean


def test_a_declared_weighting_splits_by_weight(photos):
    mira, sol, curator, vendor = (
        factories.creator(),
        factories.creator(),
        factories.creator(),
        factories.vendor(),
    )
    garden = register(mira, photos["Garden"], title="Garden")
    wood = register(sol, photos["Wood"], title="Wood")
    weighted = dataset(curator, price_minor=1_000, weighting="declared")
    contributing.item_contribute(dataset=weighted, user=mira, work=garden, weight=3)
    contributing.item_contribute(dataset=weighted, user=sol, work=wood, weight=1)
    snapshot = snapshots.snapshot_create(dataset=weighted, user=curator)

    licence = sales.licence_purchase(
        snapshot=snapshot, organisation=funded(vendor, 1_000), user=vendor
    ).licence

    parts = dict(
        SaleShare.objects.filter(licence=licence, work__isnull=False).values_list("work_id", "amount_minor")
    )
    assert parts == {garden.pk: 750, wood.pk: 250}


def test_a_dataset_licence_pays_each_members_licence_fee_once_and_settlement_credits_the_owners(photos):
    # given two works whose terms carry licence fees, in a dataset priced above both floors
    mira, sol, curator, vendor = (
        factories.creator(),
        factories.creator(),
        factories.creator(),
        factories.vendor(),
    )
    garden = register(mira, photos["Garden"], title="Garden", licence_fee_minor=2_000)
    wood = register(sol, photos["Wood"], title="Wood", licence_fee_minor=1_000)
    photo_set = dataset(curator, price_minor=10_001, curator_share_bps=1_000)
    contributing.item_contribute(dataset=photo_set, user=mira, work=garden)
    contributing.item_contribute(dataset=photo_set, user=sol, work=wood)
    snapshot = snapshots.snapshot_create(dataset=photo_set, user=curator)
    organisation = funded(vendor, 50_000)

    # when the vendor buys the licence, then clicks again
    first = sales.licence_purchase(snapshot=snapshot, organisation=organisation, user=vendor)
    replay = sales.licence_purchase(snapshot=snapshot, organisation=organisation, user=vendor)

    # then it paid once, and each member's part covers its own licence fee and training price
    assert (first.created, replay.created, replay.licence.pk) == (True, False, first.licence.pk)
    assert ledger.prepaid_available(organisation=organisation, currency="USD") == 50_000 - 10_001
    parts = dict(SaleShare.objects.filter(work__isnull=False).values_list("work_id", "amount_minor"))
    assert parts == {garden.pk: 4_501, wood.pk: 4_500}  # the curator has 1,000; the odd unit is Garden's
    assert all(part >= 2_000 + 5 for part in parts.values())
    assert RevenueItem.objects.filter(source=RevenueSource.DATASET).count() == 2

    # and settlement credits the owners (less the platform's 10%) exactly once
    assert revenue_settle().items == 2
    assert revenue_settle().items == 0
    assert [payable(user) for user in (mira, sol, curator)] == [4_051, 4_050, 1_000]
    assert ledger_check().clean
