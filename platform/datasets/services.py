"""Writes for datasets: create and curate, contribute and opt out, cut snapshots, sell licences.

Invariants:
- an item joins only when its work's current offer allows `ai-train` and the dataset's terms are not
  looser than the work's (datasets/terms.py defines "looser"); every snapshot re-checks all of them;
- a do-not-train flag (on a work or on a creator) takes the work out of every dataset at once, and no
  snapshot or sale includes it afterwards;
- a snapshot is written once and never changed; an opt-out after it is recorded against it;
- a sale is one database transaction: the licence row, one revenue item per work (held on the vendor's
  prepaid balance by a conditional UPDATE), the curator's part, and the receipt. A short balance raises
  InsufficientFunds (HTTP 402) and changes nothing;
- the price is allocated once over the curator and every work (largest remainder): the parts sum to the
  price exactly and each is within one minor unit of its exact share. A text dataset weighing by tokens
  gives each work its tokens (counted by the retrieval's tokenizer) as its weight.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from django.core.files.storage import default_storage
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum

from access import receipts, signing
from accounts.models import Organisation, Role, User
from catalog import consent, tracing
from catalog.consent import TRAINING
from catalog.models import (
    TEXT_KINDS,
    Asset,
    FingerprintStatus,
    Offer,
    OfferStatus,
    SplitShare,
    SplitSheetStatus,
    TextVersion,
    UseClass,
    Work,
    WorkKind,
    WorkStatus,
)
from common import clock
from common import currency as currencies
from common.money import Money, allocate
from common.problems import ApiError, Conflict, Forbidden, NotFound
from datasets import delivery, quality
from datasets.models import (
    BPS_WHOLE,
    Dataset,
    DatasetItem,
    DatasetKind,
    DatasetLicence,
    DatasetNotice,
    DatasetStatus,
    ItemStatus,
    Pricing,
    SaleShare,
    Snapshot,
    SnapshotItem,
    SnapshotOptOut,
    TrainingOptOut,
    Weighting,
)
from datasets.terms import AI_TRAIN, DatasetTerms, Looser, MemberTerms, looser_terms, price_is_looser
from media import services as media
from media.errors import MediaError
from media.text import passages, quotes
from media.text.embedding import CLAIM_CONFIDENCE as PARAPHRASE_CLAIM_CONFIDENCE
from media.validation import MediaInfo, inspect
from royalties import revenue as royalty_revenue

logger = logging.getLogger(__name__)

RECEIPT_TYPE = "dataset-licence"
# A fingerprint match this confident between two items of a dataset makes the later one a duplicate.
DUPLICATE_CONFIDENCE = 0.9
MAX_ITEMS_PER_REQUEST = 200
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_ASSET_KINDS: dict[str, set[str]] = {
    DatasetKind.IMAGE: {WorkKind.IMAGE},
    DatasetKind.AUDIO: {WorkKind.AUDIO},
    DatasetKind.VOICE: {WorkKind.VOICE, WorkKind.AUDIO},
    DatasetKind.TEXT: set(TEXT_KINDS),
}
# A text is a near-duplicate of an included one when their 3-word shingles resemble this much (Jaccard):
# a lightly edited or re-typed copy, not a text that quotes another.
NEAR_DUPLICATE_TEXT_RESEMBLANCE = 0.8


# Datasets ----------------------------------------------------------------------------------------------


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


def _locked_for_curator(dataset: Dataset, user: User) -> Dataset:
    """The dataset's row, locked for this transaction; NotFound unless `user` curates it."""
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    if not can_curate(user, dataset):
        raise NotFound("No such dataset among those you curate.", code="dataset_not_found")
    return dataset


@transaction.atomic
def dataset_terms_update(*, dataset: Dataset, user: User, offering: Offering) -> Dataset:
    """Publish new terms for the dataset (the next terms version). Snapshots keep the version they were
    cut under; the next snapshot re-checks every item against the new terms."""
    dataset = _locked_for_curator(dataset, user)
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
    dataset = _locked_for_curator(dataset, user)
    if status not in DatasetStatus.values:
        raise ApiError(f"status is one of {', '.join(DatasetStatus.values)}.", code="invalid_status")
    dataset.status = status
    dataset.save(update_fields=["status", "updated_at"])
    return dataset


# Eligibility -------------------------------------------------------------------------------------------


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


def _member_terms(offer: Offer) -> MemberTerms:
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


def _refusals(dataset: Dataset, works: Sequence[Work]) -> dict[int, tuple[Looser, Offer | None]]:
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
            found = looser_terms(terms, _member_terms(offer))
            result[work.pk] = (found[0] if found else Looser("", ""), offer)
    return result


def _total_weight(dataset: Dataset, extra: int = 0) -> tuple[int, int]:
    """(number of included items, their total weight), counting `extra` more of weight `extra`."""
    field = "tokens" if dataset.weighting == Weighting.TOKENS else "weight"
    row = dataset.items.filter(status=ItemStatus.INCLUDED).aggregate(n=Count("id"), w=Sum(field))
    count, weight = int(row["n"] or 0), int(row["w"] or 0)
    if extra:
        count, weight = count + 1, weight + extra
    return count, weight


def _sale_price(dataset: Dataset, item_count: int) -> int:
    """A sale's price; refused (before anything is written) above the currency's maximum amount, which a
    per-item price times many items could reach."""
    price = dataset.price_minor * item_count if dataset.pricing == Pricing.PER_ITEM else dataset.price_minor
    if price > currencies.max_minor(dataset.currency):
        raise ApiError(
            f"This sale's price is above the largest amount: {currencies.bound_text(dataset.currency)}.",
            code="amount_out_of_range",
        )
    return price


def _item_weight(dataset: Dataset, declared: int) -> int:
    return declared if dataset.weighting == Weighting.DECLARED else 1


def _sale_weight(dataset: Dataset, item: DatasetItem) -> int:
    """What the item weighs in a sale: its tokens when the dataset weighs by tokens, else its weight."""
    if dataset.weighting == Weighting.TOKENS:
        return item.tokens or 0
    return item.weight


# Contributing ------------------------------------------------------------------------------------------


def _read(asset: Asset) -> bytes:
    with default_storage.open(asset.blob.storage_name, "rb") as handle:
        data: bytes = handle.read()
    return data


def _notify(user_id: int, dataset: Dataset, item: DatasetItem | None, kind: str, message: str) -> None:
    DatasetNotice.objects.create(
        user_id=user_id, dataset=dataset, item=item, kind=kind, message=message[:500]
    )
    transaction.on_commit(partial(_mail_notice, user_id, dataset.title, message))


def _mail_notice(user_id: int, title: str, message: str) -> None:
    email = User.objects.filter(pk=user_id).values_list("email", flat=True).first()
    if email:
        send_mail(
            subject=f"Your items in the dataset “{title}”",
            message=message,
            from_email=None,
            recipient_list=[email],
        )


def item_contribute(
    *, dataset: Dataset, user: User, work: Work, asset_ids: Sequence[int] | None = None, weight: int = 1
) -> list[DatasetItem]:
    """Opt a work's files into a dataset: each becomes an item, included or left out with the reason.

    Refused (ApiError, nothing stored) when the user does not manage the work, the dataset is closed, the
    work may not be in it (kind, do-not-train, no `ai-train` in its terms, terms stricter than the
    dataset's, or a price the dataset's would undercut), or its media matches someone else's registered
    work the contributor holds no grant for. Items below the quality floors and near-duplicates of an
    item already in the dataset are stored as excluded, with the reason; the owners of both duplicates are
    told.
    """
    fresh = Work.objects.filter(pk=work.pk, created_by=user).first()  # its status may have moved since
    if fresh is None:
        raise NotFound("No such work among the works you manage.", code="work_not_found")
    work = fresh
    if dataset.status != DatasetStatus.OPEN:
        raise Conflict("This dataset is closed to new contributions.", code="dataset_closed")
    if weight < 1:
        raise ApiError("weight is a positive integer.", code="invalid_weight")
    refusal, offer = _refusals(dataset, [work])[work.pk]
    if refusal.code:
        raise Forbidden(refusal.reason, code=refusal.code)
    assert offer is not None
    if dataset.kind == DatasetKind.TEXT:
        return _contribute_text(
            dataset=dataset, user=user, work=work, offer=offer, asset_ids=asset_ids, weight=weight
        )
    assets = list(Asset.objects.filter(work=work).select_related("blob").order_by("id"))
    if asset_ids is not None:
        wanted = set(asset_ids)
        assets = [asset for asset in assets if asset.pk in wanted]
        if len(assets) != len(wanted):
            raise NotFound("Some of the files are not this work's.", code="asset_not_found")
    if not assets:
        raise ApiError("The work has no files to contribute.", code="no_assets")
    if len(assets) > MAX_ITEMS_PER_REQUEST:
        raise ApiError(f"At most {MAX_ITEMS_PER_REQUEST} files per request.", code="too_many_items")
    item_weight = _item_weight(dataset, weight)
    _refuse_below_floor(dataset, item_weight, offer)
    prepared = []
    for asset in assets:
        data = _read(asset)
        verdict = quality.check(
            data,
            quality.Floors(
                dataset.min_width, dataset.min_height, dataset.min_duration_ms, dataset.min_loudness_dbfs
            ),
        )
        matches: list[media.ContentMatch] = []
        if verdict.info is not None:
            if asset.fingerprint_status != FingerprintStatus.DONE:
                tracing.asset_fingerprint(asset_id=asset.pk)  # what the upload's task does; idempotent
            _refuse_foreign(data, user=user, work=work)
            try:
                matches = media.content_match(data=data, info=verdict.info, limit=20)
            except MediaError:
                matches = []
        prepared.append((asset, verdict, matches))
    return _store_items(dataset=dataset, user=user, work=work, weight=item_weight, prepared=prepared)


def _refuse_foreign(data: bytes, *, user: User, work: Work) -> None:
    try:
        matched = tracing.match_works(data=data, info=inspect(data), user=user, derived_from=work)
    except MediaError:
        return
    for found in matched:
        if (
            found.work.pk != work.pk
            and not found.covered
            # The earlier registration has priority: a later copy of this work does not bar the original.
            and (found.work.created_at, found.work.pk) < (work.created_at, work.pk)
            and found.match.confidence >= tracing.CLAIM_CONFIDENCE
        ):
            raise Forbidden(
                f"This file matches “{found.work.title}”, registered by someone else, "
                "and you hold no licence for it.",
                code="foreign_match",
                extra={"matched_work": found.work.pk},
            )


@transaction.atomic
def _store_items(
    *,
    dataset: Dataset,
    user: User,
    work: Work,
    weight: int,
    prepared: list[tuple[Asset, quality.Verdict, list[media.ContentMatch]]],
) -> list[DatasetItem]:
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    items = []
    for asset, verdict, matches in prepared:
        existing = _item_already_in(dataset, asset)
        if existing is not None:
            items.append(existing)
            continue
        item = DatasetItem(
            dataset=dataset, work=work, asset=asset, sha256=asset.blob_id, contributor=user, weight=weight
        )
        if not verdict.passed:
            item.status, item.reason_code, item.reason = (
                ItemStatus.EXCLUDED,
                verdict.code,
                verdict.reason[:300],
            )
        else:
            original = _duplicate_of(dataset, asset.blob_id, matches)
            if original is not None:
                item.status, item.reason_code = ItemStatus.EXCLUDED, "near_duplicate"
                item.reason = (
                    f"A near-duplicate of item #{original.pk} (“{original.work.title}”), "
                    "already in the dataset."
                )
                item.duplicate_of = original
        item.save()
        if item.duplicate_of is not None:
            original = item.duplicate_of
            message = (
                f"“{work.title}” (item #{item.pk}) and “{original.work.title}” (item #{original.pk}) "
                f"are near-duplicates by fingerprint in the dataset “{dataset.title}”: "
                f"they count as one item, #{original.pk}."
            )
            for owner in {item.contributor_id, original.contributor_id}:
                _notify(owner, dataset, item, "near_duplicate", message)
        elif item.status == ItemStatus.EXCLUDED:
            _notify(user.pk, dataset, item, item.reason_code, f"“{work.title}” was left out: {item.reason}")
        items.append(item)
    return items


def _duplicate_of(dataset: Dataset, sha256: str, matches: Iterable[media.ContentMatch]) -> DatasetItem | None:
    close = {sha256} | {m.sha256 for m in matches if m.confidence >= DUPLICATE_CONFIDENCE}
    return (
        DatasetItem.objects.filter(dataset=dataset, status=ItemStatus.INCLUDED, sha256__in=close)
        .select_related("work")
        .order_by("id")
        .first()
    )


# Contributing text -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PreparedText:
    version: TextVersion
    tokens: int
    text_sha256: str


def _contribute_text(
    *,
    dataset: Dataset,
    user: User,
    work: Work,
    offer: Offer,
    asset_ids: Sequence[int] | None,
    weight: int,
) -> list[DatasetItem]:
    """A text work's versions as items: by default only the newest (older versions would be
    near-duplicates of it), or the files named. Each is counted in tokens by the retrieval's tokenizer."""
    versions = list(
        TextVersion.objects.filter(work=work).select_related("asset__blob").order_by("-version", "-id")
    )
    if asset_ids is None:
        versions = versions[:1]
    else:
        wanted = set(asset_ids)
        versions = [version for version in versions if version.asset_id in wanted]
        if len(versions) != len(wanted):
            raise NotFound("Some of the files are not this work's texts.", code="asset_not_found")
    if not versions:
        raise ApiError("The work has no text to contribute.", code="no_assets")
    if len(versions) > MAX_ITEMS_PER_REQUEST:
        raise ApiError(f"At most {MAX_ITEMS_PER_REQUEST} files per request.", code="too_many_items")
    counts = passages.count_tokens([version.text for version in versions])
    prepared = []
    for version, tokens in zip(versions, counts, strict=True):
        if tokens < 1:
            raise ApiError("The text has no tokens to contribute.", code="empty_text")
        item_weight = tokens if dataset.weighting == Weighting.TOKENS else _item_weight(dataset, weight)
        _refuse_below_floor(dataset, item_weight, offer)
        _refuse_foreign_text(version, user=user, work=work)
        text_sha256 = hashlib.sha256(version.text.encode()).hexdigest()
        prepared.append(_PreparedText(version, tokens, text_sha256))
    return _store_text_items(
        dataset=dataset, user=user, work=work, weight=_item_weight(dataset, weight), prepared=prepared
    )


def _item_already_in(dataset: Dataset, asset: Asset) -> DatasetItem | None:
    """The dataset's item for this file, if it has one; a file opted out stays out (409)."""
    existing = DatasetItem.objects.filter(dataset=dataset, asset=asset).first()
    if existing is not None and existing.status == ItemStatus.OPTED_OUT:
        raise Conflict(
            "This file was opted out of the dataset; opting out is final for a dataset.",
            code="item_opted_out",
        )
    return existing


def _refuse_below_floor(dataset: Dataset, item_weight: int, offer: Offer) -> None:
    floor = _member_terms(offer).training_floor_minor
    count, total = _total_weight(dataset, extra=item_weight)
    if price_is_looser(
        price_minor=_sale_price(dataset, count),
        curator_share_bps=dataset.curator_share_bps,
        weight=item_weight,
        total_weight=total,
        floor_minor=floor,
    ):
        raise Forbidden(
            "The dataset's price would pay this work less per sale than its own training terms ask "
            f"({currencies.format_minor(floor, offer.currency)}).",
            code="price_below_terms",
        )


def _refuse_foreign_text(version: TextVersion, *, user: User, work: Work) -> None:
    """As `_refuse_foreign`, for text: a quote of someone else's earlier work (confidence 0.9), or a
    paraphrase close enough to open a claim (0.97), bars the text."""
    info = MediaInfo(kind="text", media_type=version.asset.blob.media_type, extension="txt")
    matched = tracing.match_works(data=b"", info=info, user=user, derived_from=work, text=version.text)
    for found in matched:
        bar = tracing.CLAIM_CONFIDENCE
        if found.match.kind == media.TextMatchKind.PARAPHRASE:
            bar = PARAPHRASE_CLAIM_CONFIDENCE
        if (
            found.work.pk != work.pk
            and not found.covered
            and (found.work.created_at, found.work.pk) < (work.created_at, work.pk)
            and found.match.confidence >= bar
        ):
            raise Forbidden(
                f"This text matches “{found.work.title}”, registered by someone else, "
                "and you hold no licence for it.",
                code="foreign_match",
                extra={"matched_work": found.work.pk},
            )


def _shingles(text: str) -> set[int]:
    return set(quotes.shingle_hashes(quotes.words(text)).tolist())


def _text_twin(
    candidates: quotes.QuoteIndex[int], texts: dict[int, str], text: str
) -> tuple[int, float] | None:
    """The included item (id) whose text this one nearly duplicates, with the Jaccard resemblance of their
    3-word shingles; None when none does. Candidates are the texts the quote fingerprint finds confidently;
    a text merely quoted inside another resembles it too little to count."""
    own = _shingles(text)
    for found in candidates.query(text, limit=5):
        if found.confidence < DUPLICATE_CONFIDENCE:
            continue
        other = _shingles(texts[found.ref_id])
        resemblance = len(own & other) / max(1, len(own | other))
        if resemblance >= NEAR_DUPLICATE_TEXT_RESEMBLANCE:
            return found.ref_id, resemblance
    return None


@transaction.atomic
def _store_text_items(
    *, dataset: Dataset, user: User, work: Work, weight: int, prepared: list[_PreparedText]
) -> list[DatasetItem]:
    """Store the text items: an exact copy (same file or same normalised text) or a near-duplicate (the
    texts' shingles resemble) of an included item is stored as excluded."""
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    included = list(
        DatasetItem.objects.filter(dataset=dataset, status=ItemStatus.INCLUDED)
        .select_related("work", "text_version")
        .order_by("id")
    )
    index: quotes.QuoteIndex[int] = quotes.QuoteIndex()
    texts: dict[int, str] = {}
    by_id: dict[int, DatasetItem] = {}
    for kept in included:
        if kept.text_version is not None:
            index.add(kept.pk, quotes.compute(kept.text_version.text))
            texts[kept.pk], by_id[kept.pk] = kept.text_version.text, kept
    items = []
    for entry in prepared:
        asset = entry.version.asset
        existing = _item_already_in(dataset, asset)
        if existing is not None:
            items.append(existing)
            continue
        item = DatasetItem(
            dataset=dataset,
            work=work,
            asset=asset,
            sha256=asset.blob_id,
            contributor=user,
            weight=weight,
            text_version=entry.version,
            text_sha256=entry.text_sha256,
            tokens=entry.tokens,
        )
        original = next(
            (
                kept
                for kept in by_id.values()
                if kept.sha256 == item.sha256 or kept.text_sha256 == entry.text_sha256
            ),
            None,
        )
        how = "an exact copy"
        if original is None:
            twin = _text_twin(index, texts, entry.version.text)
            if twin is not None:
                original = by_id[twin[0]]
                how = f"a near-duplicate ({twin[1]:.0%} of their 3-word shingles in common)"
        if original is not None:
            item.status, item.reason_code, item.duplicate_of = ItemStatus.EXCLUDED, "near_duplicate", original
            reason = f"{how} of item #{original.pk} (“{original.work.title}”), already in the dataset."
            item.reason = (reason[0].upper() + reason[1:])[:300]
        item.save()
        if original is not None:
            message = (
                f"“{work.title}” (item #{item.pk}) is {how} of “{original.work.title}” (item #{original.pk}) "
                f"in the dataset “{dataset.title}”: they count as one item, #{original.pk}."
            )
            for owner in {item.contributor_id, original.contributor_id}:
                _notify(owner, dataset, item, "near_duplicate", message)
        else:
            index.add(item.pk, quotes.compute(entry.version.text))
            texts[item.pk], by_id[item.pk] = entry.version.text, item
        items.append(item)
    return items


# Opting out --------------------------------------------------------------------------------------------


def _record_against_snapshots(item_ids: Sequence[int], reason_code: str) -> int:
    entries = SnapshotItem.objects.filter(item_id__in=item_ids).exclude(opt_outs__isnull=False)
    rows = [SnapshotOptOut(snapshot_id=e.snapshot_id, entry=e, reason_code=reason_code) for e in entries]
    SnapshotOptOut.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _promote_duplicates(item: DatasetItem) -> None:
    """The item leaving was the kept copy of near-duplicates: the earliest of them takes its place."""
    duplicates = list(
        DatasetItem.objects.filter(duplicate_of=item, status=ItemStatus.EXCLUDED).order_by("id")
    )
    if not duplicates:
        return
    first, rest = duplicates[0], duplicates[1:]
    DatasetItem.objects.filter(pk=first.pk).update(
        status=ItemStatus.INCLUDED, reason_code="", reason="", duplicate_of=None
    )
    DatasetItem.objects.filter(pk__in=[d.pk for d in rest]).update(duplicate_of=first)


def _opt_out(items: Sequence[DatasetItem], reason_code: str, reason: str) -> None:
    ids = [item.pk for item in items]
    DatasetItem.objects.filter(pk__in=ids).update(
        status=ItemStatus.OPTED_OUT, reason_code=reason_code, reason=reason[:300], duplicate_of=None
    )
    for item in items:
        _promote_duplicates(item)
    _record_against_snapshots(ids, reason_code)


@transaction.atomic
def item_opt_out(*, item: DatasetItem, user: User) -> DatasetItem:
    """Take an item out of the dataset's future snapshots. Snapshots already cut keep their list (a sold
    licence stays valid) and the opt-out is recorded against each of them."""
    item = DatasetItem.objects.select_for_update().select_related("work").get(pk=item.pk)
    if user.pk not in (item.contributor_id, item.work.created_by_id):
        raise NotFound("No such item among yours.", code="item_not_found")
    if item.status == ItemStatus.OPTED_OUT:
        return item
    _opt_out([item], "opted_out", "Opted out by the contributor.")
    item.refresh_from_db()
    return item


@transaction.atomic
def work_opt_out_all(*, work: Work, user: User) -> int:
    """Opt one work out of every dataset it is in; the number of items taken out."""
    if work.created_by_id != user.pk:
        raise NotFound("No such work among the works you manage.", code="work_not_found")
    items = list(
        DatasetItem.objects.filter(work=work).exclude(status=ItemStatus.OPTED_OUT).select_for_update()
    )
    _opt_out(items, "opted_out", "Opted out by the contributor.")
    return len(items)


@transaction.atomic
def training_opt_out_set(*, user: User, work: Work | None = None) -> TrainingOptOut:
    """Flag do-not-train: on `work` (its manager only) or, without a work, on the user as a creator.

    Every item of the work (or of every work the user owns) leaves every dataset at once, recorded
    against the snapshots that hold it; neither can join a dataset again while the flag stands.
    """
    if work is not None and work.created_by_id != user.pk:
        raise NotFound("No such work among the works you manage.", code="work_not_found")
    try:
        with transaction.atomic():
            flag = TrainingOptOut.objects.create(user=None if work else user, work=work, set_by=user)
    except IntegrityError:
        flag = TrainingOptOut.objects.get(work=work) if work else TrainingOptOut.objects.get(user=user)
    if work is not None:
        affected = DatasetItem.objects.filter(work=work)
    else:
        owned = SplitShare.objects.filter(sheet__status=SplitSheetStatus.ACTIVE, user=user).values(
            "sheet__work_id"
        )
        affected = DatasetItem.objects.filter(Q(work__created_by=user) | Q(work_id__in=owned))
    items = list(affected.exclude(status=ItemStatus.OPTED_OUT).select_for_update())
    _opt_out(items, "do_not_train", "The work or one of its owners is flagged do-not-train.")
    return flag


@transaction.atomic
def training_opt_out_clear(*, user: User, work: Work | None = None) -> int:
    """Lift a do-not-train flag. Items already opted out stay out; the works may be contributed again."""
    if work is not None:
        if work.created_by_id != user.pk:
            raise NotFound("No such work among the works you manage.", code="work_not_found")
        deleted, _ = TrainingOptOut.objects.filter(work=work).delete()
    else:
        deleted, _ = TrainingOptOut.objects.filter(user=user).delete()
    return deleted


# Snapshots ---------------------------------------------------------------------------------------------


def _owners(work_ids: set[int]) -> dict[int, list[dict[str, object]]]:
    rows = (
        SplitShare.objects.filter(sheet__work_id__in=work_ids, sheet__status=SplitSheetStatus.ACTIVE)
        .select_related("user")
        .order_by("sheet__work_id", "-share_bps", "id")
    )
    owners: dict[int, list[dict[str, object]]] = {}
    for share in rows:
        name = share.user.public_name if share.user is not None else share.email.split("@", 1)[0]
        owners.setdefault(share.sheet.work_id, []).append({"name": name, "share_bps": share.share_bps})
    return owners


def attribution_line(
    *, title: str, owners: Sequence[dict[str, object]], dataset: Dataset, number: int
) -> str:
    names = ", ".join(str(owner["name"]) for owner in owners) or "its owners"
    return f"“{title}” by {names}, licensed via the Tribute dataset “{dataset.title}” (snapshot {number})"[
        :400
    ]


def items_digest(rows: Iterable[tuple[object, ...]]) -> str:
    """SHA-256 over the canonical item list: (position, content hash, work, offer version, weight), and
    for text items also (normalised text's SHA-256, tokens)."""
    canonical = json.dumps([list(row) for row in rows], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@transaction.atomic
def snapshot_create(*, dataset: Dataset, user: User) -> Snapshot:
    """Cut the next snapshot: every included item is checked again (do-not-train, current terms, price
    floor) and left out with the reason when it no longer qualifies; the rest are frozen with their
    content hash, owners and offer version. Refused when nothing qualifies."""
    dataset = _locked_for_curator(dataset, user)
    if dataset.expires_at is not None and dataset.expires_at <= clock.now():
        raise Conflict("The dataset's terms have expired; publish new terms first.", code="dataset_expired")
    items = list(
        DatasetItem.objects.filter(dataset=dataset, status=ItemStatus.INCLUDED)
        .select_related("work", "asset__blob", "text_version")
        .order_by("id")
    )
    weights = {item.pk: _sale_weight(dataset, item) for item in items}
    offers: dict[int, Offer] = {}
    kept: list[DatasetItem] = []
    checked = _refusals(dataset, list({item.work_id: item.work for item in items}.values()))
    for item in items:
        refusal, offer = checked[item.work_id]
        if refusal.code:
            _exclude(item, dataset, refusal)
            continue
        assert offer is not None
        offers[item.work_id] = offer
        kept.append(item)
    # Leaving an item out never lowers another's part, so this settles in at most len(kept) rounds.
    while kept:
        total = sum(weights[item.pk] for item in kept)
        price = _sale_price(dataset, len(kept))
        under = [
            item
            for item in kept
            if price_is_looser(
                price_minor=price,
                curator_share_bps=dataset.curator_share_bps,
                weight=weights[item.pk],
                total_weight=total,
                floor_minor=_member_terms(offers[item.work_id]).training_floor_minor,
            )
        ]
        if not under:
            break
        for item in under:
            _exclude(
                item,
                dataset,
                Looser(
                    "price_below_terms",
                    "The dataset's price pays this work less per sale than its own training terms ask.",
                ),
            )
        kept = [item for item in kept if item not in under]
    if not kept:
        raise Conflict("No item qualifies for a snapshot.", code="empty_snapshot")
    number = (dataset.snapshots.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    owners = _owners({item.work_id for item in kept})
    text = dataset.kind == DatasetKind.TEXT
    rows: list[tuple[object, ...]] = [
        (position, item.sha256, item.work_id, offers[item.work_id].version, weights[item.pk])
        + ((item.text_sha256, item.tokens) if text else ())
        for position, item in enumerate(kept)
    ]
    snapshot = Snapshot.objects.create(
        dataset=dataset,
        number=number,
        terms=dataset.terms(),
        terms_version=dataset.terms_version,
        currency=dataset.currency,
        price_minor=_sale_price(dataset, len(kept)),
        item_count=len(kept),
        items_sha256=items_digest(rows),
        tokenizer=passages.TOKENIZER_NAME if text else "",
        total_tokens=sum(item.tokens or 0 for item in kept) if text else None,
        created_by=user,
    )
    entries = SnapshotItem.objects.bulk_create(
        [
            SnapshotItem(
                snapshot=snapshot,
                item=item,
                position=position,
                work_id=item.work_id,
                blob=item.asset.blob,
                offer=offers[item.work_id],
                offer_version=offers[item.work_id].version,
                contributor_id=item.contributor_id,
                weight=weights[item.pk],
                owners=owners.get(item.work_id, []),
                attribution=attribution_line(
                    title=item.work.title, owners=owners.get(item.work_id, []), dataset=dataset, number=number
                ),
                title=item.work.title[:200],
                text_version=item.text_version,
                text_sha256=item.text_sha256,
                tokens=item.tokens,
            )
            for position, item in enumerate(kept)
        ],
        batch_size=500,
    )
    if text:
        # The JSONL shards are laid out (and hashed) once: every buyer downloads the same bytes.
        snapshot.shards = delivery.text_shard_layout(snapshot=snapshot, entries=entries)
        snapshot.save(update_fields=["shards"])
    return snapshot


def _exclude(item: DatasetItem, dataset: Dataset, refusal: Looser) -> None:
    DatasetItem.objects.filter(pk=item.pk).update(
        status=ItemStatus.EXCLUDED, reason_code=refusal.code, reason=refusal.reason[:300]
    )
    _notify(
        item.contributor_id,
        dataset,
        item,
        refusal.code,
        f"“{item.work.title}” was left out: {refusal.reason}",
    )


# Licences ----------------------------------------------------------------------------------------------


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
