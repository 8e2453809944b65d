"""Selling a snapshot's licence: one transaction, the price split over the curator and every work."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Count, Sum

from access import receipts, signing
from accounts.models import Organisation, User
from catalog.models import (
    Offer,
    OfferStatus,
)
from common import clock
from common.money import Money, allocate
from common.problems import ApiError, Conflict, Forbidden, NotFound
from datasets.models import (
    BPS_WHOLE,
    DatasetLicence,
    SaleShare,
    Snapshot,
    SnapshotItem,
)
from datasets.terms import AI_TRAIN
from royalties import revenue as royalty_revenue

RECEIPT_TYPE = "dataset-licence"
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def snapshot_sale_problem(snapshot: Snapshot) -> tuple[str, str] | None:
    """Why this snapshot cannot be sold now, or None: only the dataset's latest snapshot is for sale, and
    only while its terms have not expired and every item still stands under the offer it was cut with."""
    latest = (
        Snapshot.objects.filter(dataset_id=snapshot.dataset_id)
        .order_by("-number")
        .values_list("pk", flat=True)
        .first()
    )
    if latest != snapshot.pk:
        return "snapshot_superseded", "A newer snapshot of this dataset is for sale; license that one."
    expires = snapshot.terms.get("expires_at")
    if expires and datetime.fromisoformat(str(expires)) <= clock.now():
        return "dataset_expired", "The dataset's terms have expired."
    if snapshot.opt_outs.exists():
        return "snapshot_stale", "Items of this snapshot were opted out; the curator must cut a new snapshot."
    stale = SnapshotItem.objects.filter(snapshot=snapshot).exclude(offer__status=OfferStatus.CURRENT)
    if stale.exists():
        return (
            "snapshot_stale",
            "Terms of some items changed since this snapshot; the curator must cut a new one.",
        )
    return None


@dataclass(frozen=True)
class Purchase:
    licence: DatasetLicence
    created: bool


def sale_parts(*, price_minor: int, curator_share_bps: int, work_weights: Sequence[int]) -> list[int]:
    """The curator's part then each work's, allocated once so every part is within one unit of exact.

    The curator's exact share is price x bps / 10,000; a work's is the rest in proportion to its weight.
    Scaling the weights by the total weight keeps both in one integer allocation."""
    total_weight = sum(work_weights)
    weights = [curator_share_bps * total_weight] + [(BPS_WHOLE - curator_share_bps) * w for w in work_weights]
    return allocate(price_minor, weights)


def licence_purchase(
    *, snapshot: Snapshot, organisation: Organisation, user: User, territory: str = ""
) -> Purchase:
    """Buy a training licence on a snapshot from the organisation's prepaid balance (once: buying the
    same snapshot again returns the licence already held). InsufficientFunds (402) when short."""
    if not organisation.membership_set.filter(user=user).exists():
        raise NotFound("No such organisation among yours.", code="organisation_not_found")
    existing = DatasetLicence.objects.filter(organisation=organisation, snapshot=snapshot).first()
    if existing is not None:
        return Purchase(existing, False)
    territory = territory.strip().upper()
    if territory and not _COUNTRY.match(territory):
        raise ApiError("territory is an ISO 3166-1 alpha-2 code.", code="invalid_territory")
    allowed = list(snapshot.terms.get("territories") or [])
    if territory and allowed and territory not in allowed:
        raise Forbidden(
            f"The dataset is licensed only in {', '.join(allowed)}.", code="territory_not_allowed"
        )
    problem = snapshot_sale_problem(snapshot)
    if problem is not None:
        raise Conflict(problem[1], code=problem[0])
    try:
        return Purchase(
            _sell(snapshot=snapshot, organisation=organisation, user=user, territory=territory), True
        )
    except IntegrityError:
        existing = DatasetLicence.objects.filter(organisation=organisation, snapshot=snapshot).first()
        if existing is None:
            raise
        return Purchase(existing, False)


@transaction.atomic
def _sell(*, snapshot: Snapshot, organisation: Organisation, user: User, territory: str) -> DatasetLicence:
    now = clock.now()
    price = Money(snapshot.price_minor, snapshot.currency)
    licence = DatasetLicence.objects.create(
        organisation=organisation,
        snapshot=snapshot,
        purchased_by=user,
        price_minor=price.amount_minor,
        currency=price.currency,
        territory=territory,
        created_at=now,
    )
    works = list(
        SnapshotItem.objects.filter(snapshot=snapshot)
        .values("work_id", "offer_id", "contributor_id")
        .annotate(weight=Sum("weight"), items=Count("id"))
        .order_by("work_id")
    )
    dataset = snapshot.dataset
    curator_bps = int(str(snapshot.terms.get("curator_share_bps", 0)))
    parts = sale_parts(
        price_minor=price.amount_minor,
        curator_share_bps=curator_bps,
        work_weights=[int(w["weight"]) for w in works],
    )
    offers = {offer.pk: offer for offer in Offer.objects.filter(pk__in={w["offer_id"] for w in works})}
    shares = []
    for row, amount in zip(works, parts[1:], strict=True):
        revenue = None
        if amount:
            revenue = royalty_revenue.dataset_share_record(
                organisation=organisation,
                key=f"dataset:{licence.licence_id}:{row['work_id']}",
                offer=offers[row["offer_id"]],
                amount=Money(amount, price.currency),
                arose_at=now,
            )
        shares.append(
            SaleShare(
                licence=licence,
                work_id=row["work_id"],
                contributor_id=row["contributor_id"],
                item_count=row["items"],
                weight=row["weight"],
                amount_minor=amount,
                currency=price.currency,
                revenue_item=revenue,
            )
        )
    if parts[0]:
        royalty_revenue.dataset_curator_pay(
            organisation=organisation,
            key=f"dataset-curator:{licence.licence_id}",
            curator_id=dataset.curator_id,
            amount=Money(parts[0], price.currency),
            memo=f"Curator's share of dataset licence {licence.licence_id}",
        )
    shares.append(
        SaleShare(
            licence=licence,
            work=None,
            contributor_id=dataset.curator_id,
            amount_minor=parts[0],
            currency=price.currency,
        )
    )
    SaleShare.objects.bulk_create(shares, batch_size=500)
    licence.receipt = receipts.sign(
        {
            "jti": str(licence.licence_id),
            "iat": int(now.timestamp()),
            "sub": f"organisation:{organisation.pk}",
            "typ": RECEIPT_TYPE,
            "dataset": dataset.pk,
            "snapshot": snapshot.pk,
            "snapshot_number": snapshot.number,
            "items": snapshot.item_count,
            "items_sha256": snapshot.items_sha256,
            "terms_version": snapshot.terms_version,
            "uses": snapshot.terms.get("uses", [AI_TRAIN]),
            "territory": territory or None,
            "price_minor": price.amount_minor,
            "currency": price.currency,
            **(
                {"tokenizer": snapshot.tokenizer, "total_tokens": snapshot.total_tokens}
                if snapshot.tokenizer
                else {}
            ),
        },
        signing.private_key(),
    )
    licence.save(update_fields=["receipt"])
    return licence
