"""When are a dataset's terms looser than a member work's own terms? Pure: no Django.

A dataset's offer is looser than a member's current offer, and the member cannot join (or is left out of
the next snapshot), when any of these holds:

- uses: the dataset allows a use class the member does not (the member must allow `ai-train`);
- commercial use: the dataset allows it and the member does not;
- attribution: the member requires it and the dataset does not;
- territory: the dataset covers a country the member does not (worldwide covers every country);
- expiry: the dataset's licence outlives the member's terms (no expiry outlives any date);
- currency: the two are priced in different currencies (not comparable, so refused);
- price: what the item earns from one sale, before the platform fee (its pro-rata part of the price after
  the curator's share), is less than a vendor would pay to license the work alone for one training use:
  the member's `ai-train` per-access price plus its licence fee.

The price test is exact integer arithmetic: part = price x (10,000 - curator bps) x weight / (10,000 x
total weight), compared without rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from common.money import BPS_WHOLE

AI_TRAIN = "ai-train"


@dataclass(frozen=True)
class DatasetTerms:
    uses: Sequence[str]
    currency: str
    commercial_use: bool
    attribution_required: bool
    territories: Sequence[str]
    expires_at: datetime | None
    curator_share_bps: int


@dataclass(frozen=True)
class MemberTerms:
    uses: dict[str, int]  # use class -> per-access price (minor units)
    currency: str
    commercial_use: bool
    attribution_required: bool
    territories: Sequence[str]
    expires_at: datetime | None
    licence_fee_minor: int

    @property
    def training_floor_minor(self) -> int:
        return self.uses.get(AI_TRAIN, 0) + self.licence_fee_minor


@dataclass(frozen=True)
class Looser:
    code: str
    reason: str


def looser_terms(dataset: DatasetTerms, member: MemberTerms) -> list[Looser]:
    """Every way the dataset's terms (price aside) are looser than the member's; empty when none."""
    found = []
    if AI_TRAIN not in member.uses:
        found.append(Looser("ai_train_not_allowed", "The work's own terms do not allow AI training."))
    extra = sorted(set(dataset.uses) - set(member.uses))
    if extra and extra != [AI_TRAIN]:
        found.append(Looser("use_not_allowed", f"The work's terms do not allow {', '.join(extra)}."))
    if dataset.currency != member.currency:
        found.append(
            Looser(
                "currency_mismatch",
                f"The work is priced in {member.currency}, the dataset in {dataset.currency}.",
            )
        )
    if dataset.commercial_use and not member.commercial_use:
        found.append(Looser("commercial_not_allowed", "The work's terms do not allow commercial use."))
    if member.attribution_required and not dataset.attribution_required:
        found.append(
            Looser("attribution_required", "The work's terms require attribution; the dataset's do not.")
        )
    if member.territories:
        outside = sorted(set(dataset.territories) - set(member.territories))
        if not dataset.territories:
            found.append(
                Looser(
                    "territory_wider",
                    f"The dataset is licensed worldwide; the work only in {', '.join(member.territories)}.",
                )
            )
        elif outside:
            found.append(Looser("territory_wider", f"The work's terms do not cover {', '.join(outside)}."))
    if member.expires_at is not None and (
        dataset.expires_at is None or dataset.expires_at > member.expires_at
    ):
        found.append(
            Looser(
                "expires_later",
                f"The work's terms end on {member.expires_at.date().isoformat()}; "
                "the dataset's licence would outlive them.",
            )
        )
    return found


def price_is_looser(
    *, price_minor: int, curator_share_bps: int, weight: int, total_weight: int, floor_minor: int
) -> bool:
    """Does the item earn less than `floor_minor` from one sale at `price_minor`? Exact."""
    if total_weight <= 0:
        return floor_minor > 0
    earned_scaled = price_minor * (BPS_WHOLE - curator_share_bps) * weight
    return earned_scaled < floor_minor * BPS_WHOLE * total_weight
