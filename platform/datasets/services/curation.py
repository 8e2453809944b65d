"""Creating and curating datasets: the terms they are offered on and their status."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from accounts.models import Role, User
from catalog.models import (
    UseClass,
)
from common import clock
from common import currency as currencies
from common.problems import ApiError, Conflict, Forbidden, NotFound
from datasets.models import (
    BPS_WHOLE,
    Dataset,
    DatasetKind,
    DatasetStatus,
    Pricing,
    Weighting,
)
from datasets.terms import AI_TRAIN

_COUNTRY = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class Offering:
    """A dataset's own licence offer and quality floors."""

    currency: str
    price_minor: int
    uses: Sequence[str] = (AI_TRAIN,)
    pricing: str = Pricing.PER_SNAPSHOT
    weighting: str = Weighting.ITEMS
    curator_share_bps: int = 0
    commercial_use: bool = False
    attribution_required: bool = True
    territories: Sequence[str] = ()
    expires_at: datetime | None = None
    min_width: int = 256
    min_height: int = 256
    min_duration_ms: int = 3000
    min_loudness_dbfs: int = -50


def _offering_fields(offering: Offering, kind: str) -> dict[str, object]:
    """The dataset fields these terms set for a dataset of `kind`, validated (ApiError naming the first bad
    one)."""
    if not currencies.is_supported(offering.currency):
        raise ApiError(f"Currency {offering.currency!r} is not supported.", code="unsupported_currency")
    uses = sorted(set(offering.uses))
    if AI_TRAIN not in uses:
        raise ApiError("A dataset's terms always allow ai-train.", code="ai_train_required")
    unknown = [use for use in uses if use not in UseClass.values or use == UseClass.DERIVATIVE]
    if unknown:
        raise ApiError(f"A dataset cannot offer {', '.join(unknown)}.", code="invalid_use_class")
    if offering.price_minor < 0:
        raise ApiError("The price cannot be negative.", code="negative_price")
    if not currencies.amount_in_bounds(offering.price_minor, offering.currency, allow_zero=True):
        raise ApiError(
            f"The price is whole minor units, {currencies.bound_text(offering.currency)}.",
            code="amount_out_of_range",
        )
    if offering.pricing not in Pricing.values:
        raise ApiError(f"pricing is one of {', '.join(Pricing.values)}.", code="invalid_pricing")
    if offering.weighting not in Weighting.values:
        raise ApiError(f"weighting is one of {', '.join(Weighting.values)}.", code="invalid_weighting")
    if offering.weighting == Weighting.TOKENS and kind != DatasetKind.TEXT:
        raise ApiError("Only text datasets weigh items by tokens.", code="invalid_weighting")
    if not 0 <= offering.curator_share_bps < BPS_WHOLE:
        raise ApiError("curator_share_bps is between 0 and 9,999.", code="invalid_share")
    territories = sorted({code.strip().upper() for code in offering.territories})
    if any(not _COUNTRY.match(code) for code in territories):
        raise ApiError(
            "Territories are ISO 3166-1 alpha-2 codes (empty: worldwide).", code="invalid_territory"
        )
    if offering.expires_at is not None and offering.expires_at <= clock.now():
        raise ApiError("expires_at must be in the future.", code="invalid_expiry")
    if min(offering.min_width, offering.min_height, offering.min_duration_ms) < 0:
        raise ApiError("Quality floors cannot be negative.", code="invalid_floor")
    return {
        "curator_share_bps": offering.curator_share_bps,
        "uses": uses,
        "currency": offering.currency,
        "pricing": offering.pricing,
        "price_minor": offering.price_minor,
        "weighting": offering.weighting,
        "commercial_use": offering.commercial_use,
        "attribution_required": offering.attribution_required,
        "territories": territories,
        "expires_at": offering.expires_at,
        "min_width": offering.min_width,
        "min_height": offering.min_height,
        "min_duration_ms": offering.min_duration_ms,
        "min_loudness_dbfs": offering.min_loudness_dbfs,
    }


@transaction.atomic
def dataset_create(
    *,
    user: User,
    title: str,
    kind: str,
    offering: Offering,
    description: str = "",
    platform_curated: bool = False,
) -> Dataset:
    """A new dataset, curated by `user` (a creator) or, for staff asking for it, by the platform."""
    if kind not in DatasetKind.values:
        raise ApiError(f"kind is one of {', '.join(DatasetKind.values)}.", code="invalid_kind")
    if platform_curated and not user.is_staff:
        raise Forbidden("Only the platform's staff may create platform-curated datasets.", code="staff_only")
    if not platform_curated and user.role != Role.CREATOR:
        raise Forbidden("Only creators curate datasets.", code="role_not_allowed")
    if not title.strip():
        raise ApiError("A dataset needs a title.", code="title_required")
    return Dataset.objects.create(
        title=title.strip()[:200],
        kind=kind,
        description=description,
        curator=None if platform_curated else user,
        created_by=user,
        **_offering_fields(offering, kind),
    )


def can_curate(user: User, dataset: Dataset) -> bool:
    if dataset.curator_id is None:
        return bool(user.is_staff)
    return dataset.curator_id == user.pk


def locked_for_curator(dataset: Dataset, user: User) -> Dataset:
    """The dataset's row, locked for this transaction; NotFound unless `user` curates it."""
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    if not can_curate(user, dataset):
        raise NotFound("No such dataset among those you curate.", code="dataset_not_found")
    return dataset


@transaction.atomic
def dataset_terms_update(*, dataset: Dataset, user: User, offering: Offering) -> Dataset:
    """Publish new terms for the dataset (the next terms version). Snapshots keep the version they were
    cut under; the next snapshot re-checks every item against the new terms."""
    dataset = locked_for_curator(dataset, user)
    fields = _offering_fields(offering, dataset.kind)
    if offering.currency != dataset.currency and dataset.snapshots.exists():
        raise Conflict("A dataset with snapshots keeps its currency.", code="currency_locked")
    for field, value in fields.items():
        setattr(dataset, field, value)
    dataset.terms_version += 1
    dataset.save()
    return dataset


@transaction.atomic
def dataset_status_set(*, dataset: Dataset, user: User, status: str) -> Dataset:
    dataset = locked_for_curator(dataset, user)
    if status not in DatasetStatus.values:
        raise ApiError(f"status is one of {', '.join(DatasetStatus.values)}.", code="invalid_status")
    dataset.status = status
    dataset.save(update_fields=["status", "updated_at"])
    return dataset
