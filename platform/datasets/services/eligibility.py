"""Which works may join a dataset and what each weighs under its terms."""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import Count, Sum

from catalog import consent
from catalog.consent import TRAINING
from catalog.models import (
    TEXT_KINDS,
    Offer,
    OfferStatus,
    SplitShare,
    SplitSheetStatus,
    Work,
    WorkKind,
    WorkStatus,
)
from common import clock
from common import currency as currencies
from common.problems import ApiError
from datasets.models import (
    Dataset,
    DatasetItem,
    DatasetKind,
    ItemStatus,
    Pricing,
    TrainingOptOut,
    Weighting,
)
from datasets.terms import DatasetTerms, Looser, MemberTerms, looser_terms

_ASSET_KINDS: dict[str, set[str]] = {
    DatasetKind.IMAGE: {WorkKind.IMAGE},
    DatasetKind.AUDIO: {WorkKind.AUDIO},
    DatasetKind.VOICE: {WorkKind.VOICE, WorkKind.AUDIO},
    DatasetKind.TEXT: set(TEXT_KINDS),
}


def _dataset_terms(dataset: Dataset) -> DatasetTerms:
    return DatasetTerms(
        uses=list(dataset.uses),
        currency=dataset.currency,
        commercial_use=dataset.commercial_use,
        attribution_required=dataset.attribution_required,
        territories=list(dataset.territories),
        expires_at=dataset.expires_at,
        curator_share_bps=dataset.curator_share_bps,
    )


def member_terms(offer: Offer) -> MemberTerms:
    return MemberTerms(
        uses={use.use_class: use.price_minor for use in offer.uses.all()},
        currency=offer.currency,
        commercial_use=offer.commercial_use,
        attribution_required=offer.attribution_required,
        territories=list(offer.territories),
        expires_at=offer.expires_at,
        licence_fee_minor=offer.licence_fee_minor,
    )


def _current_offers(work_ids: set[int]) -> dict[int, Offer]:
    """Each work's current, unexpired offer (with its uses), in two queries however many works."""
    now = clock.now()
    offers = Offer.objects.filter(work_id__in=work_ids, status=OfferStatus.CURRENT).prefetch_related("uses")
    return {offer.work_id: offer for offer in offers if offer.expires_at is None or offer.expires_at > now}


def _flagged_works(works: Sequence[Work]) -> set[int]:
    """The works flagged do-not-train, themselves or through their manager or any owner on the active
    split sheet (three queries however many works)."""
    ids = {work.pk for work in works}
    owners: dict[int, set[int]] = {work.pk: {work.created_by_id} for work in works}
    shares = SplitShare.objects.filter(
        sheet__work_id__in=ids, sheet__status=SplitSheetStatus.ACTIVE, user__isnull=False
    ).values_list("sheet__work_id", "user_id")
    for work_id, user_id in shares:
        owners[work_id].add(user_id)
    everyone = set().union(*owners.values()) if owners else set()
    flagged_users = set(TrainingOptOut.objects.filter(user_id__in=everyone).values_list("user_id", flat=True))
    flagged = set(TrainingOptOut.objects.filter(work_id__in=ids).values_list("work_id", flat=True))
    return flagged | {work_id for work_id, users in owners.items() if users & flagged_users}


def do_not_train(work: Work) -> bool:
    """Is the work flagged do-not-train, itself or through any of its owners?"""
    return bool(_flagged_works([work]))


def refusals(dataset: Dataset, works: Sequence[Work]) -> dict[int, tuple[Looser, Offer | None]]:
    """Per work, why it may not be in the dataset (an empty code when it may) and its current offer."""
    flagged = _flagged_works(works)
    refused = consent.refused_uses(work.pk for work in works)
    withdrawn = {work_id for work_id, uses in refused.items() if TRAINING in uses}
    offers = _current_offers({work.pk for work in works if work.status == WorkStatus.PUBLISHED})
    terms = _dataset_terms(dataset)
    result: dict[int, tuple[Looser, Offer | None]] = {}
    for work in works:
        offer = offers.get(work.pk)
        if work.kind not in _ASSET_KINDS[DatasetKind(dataset.kind)]:
            result[work.pk] = (
                Looser("wrong_kind", f"A {dataset.kind} dataset does not take {work.kind} works."),
                None,
            )
        elif work.pk in flagged:
            result[work.pk] = (
                Looser("do_not_train", "The work or one of its owners is flagged do-not-train."),
                None,
            )
        elif work.pk in withdrawn:
            result[work.pk] = (
                Looser("consent_withdrawn", "The creator withdrew consent to AI training with this work."),
                None,
            )
        elif offer is None:
            result[work.pk] = (Looser("no_current_offer", "The work has no current licence offer."), None)
        else:
            found = looser_terms(terms, member_terms(offer))
            result[work.pk] = (found[0] if found else Looser("", ""), offer)
    return result


def total_weight(dataset: Dataset, extra: int = 0) -> tuple[int, int]:
    """(number of included items, their total weight), counting `extra` more of weight `extra`."""
    field = "tokens" if dataset.weighting == Weighting.TOKENS else "weight"
    row = dataset.items.filter(status=ItemStatus.INCLUDED).aggregate(n=Count("id"), w=Sum(field))
    count, weight = int(row["n"] or 0), int(row["w"] or 0)
    if extra:
        count, weight = count + 1, weight + extra
    return count, weight


def sale_price(dataset: Dataset, item_count: int) -> int:
    """A sale's price; refused (before anything is written) above the currency's maximum amount, which a
    per-item price times many items could reach."""
    price = dataset.price_minor * item_count if dataset.pricing == Pricing.PER_ITEM else dataset.price_minor
    if price > currencies.max_minor(dataset.currency):
        raise ApiError(
            f"This sale's price is above the largest amount: {currencies.bound_text(dataset.currency)}.",
            code="amount_out_of_range",
        )
    return price


def declared_weight(dataset: Dataset, declared: int) -> int:
    return declared if dataset.weighting == Weighting.DECLARED else 1


def sale_weight(dataset: Dataset, item: DatasetItem) -> int:
    """What the item weighs in a sale: its tokens when the dataset weighs by tokens, else its weight."""
    if dataset.weighting == Weighting.TOKENS:
        return item.tokens or 0
    return item.weight
