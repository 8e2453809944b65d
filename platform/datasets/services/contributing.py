"""Contributing works (media and text) to a dataset: each file checked, duplicates left out."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.core.files.storage import default_storage
from django.db import transaction

from accounts.models import User
from catalog import fingerprinting, tracing
from catalog.models import (
    Asset,
    FingerprintStatus,
    Offer,
    TextVersion,
    Work,
)
from common import currency as currencies
from common.problems import ApiError, Conflict, Forbidden, NotFound
from datasets import quality
from datasets.models import (
    Dataset,
    DatasetItem,
    DatasetKind,
    DatasetStatus,
    ItemStatus,
    Weighting,
)
from datasets.services.eligibility import declared_weight, member_terms, refusals, sale_price, total_weight
from datasets.services.notices import notify
from datasets.terms import price_is_looser
from matching import services as media
from media.errors import MediaError
from media.text import passages, quotes
from media.text.embedding import CLAIM_CONFIDENCE as PARAPHRASE_CLAIM_CONFIDENCE
from media.validation import MediaInfo, inspect

# A fingerprint match this confident between two items of a dataset makes the later one a duplicate.
DUPLICATE_CONFIDENCE = 0.9
MAX_ITEMS_PER_REQUEST = 200
# A text is a near-duplicate of an included one when their 3-word shingles resemble this much (Jaccard):
# a lightly edited or re-typed copy, not a text that quotes another.
NEAR_DUPLICATE_TEXT_RESEMBLANCE = 0.8


def _read(asset: Asset) -> bytes:
    with default_storage.open(asset.blob.storage_name, "rb") as handle:
        data: bytes = handle.read()
    return data


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
    refusal, offer = refusals(dataset, [work])[work.pk]
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
    item_weight = declared_weight(dataset, weight)
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
                fingerprinting.asset_fingerprint(asset_id=asset.pk)  # what the upload's task does; idempotent
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
                notify(owner, dataset, item, "near_duplicate", message)
        elif item.status == ItemStatus.EXCLUDED:
            notify(user.pk, dataset, item, item.reason_code, f"“{work.title}” was left out: {item.reason}")
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
        item_weight = tokens if dataset.weighting == Weighting.TOKENS else declared_weight(dataset, weight)
        _refuse_below_floor(dataset, item_weight, offer)
        _refuse_foreign_text(version, user=user, work=work)
        text_sha256 = hashlib.sha256(version.text.encode()).hexdigest()
        prepared.append(_PreparedText(version, tokens, text_sha256))
    return _store_text_items(
        dataset=dataset, user=user, work=work, weight=declared_weight(dataset, weight), prepared=prepared
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
    floor = member_terms(offer).training_floor_minor
    count, total = total_weight(dataset, extra=item_weight)
    if price_is_looser(
        price_minor=sale_price(dataset, count),
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
                notify(owner, dataset, item, "near_duplicate", message)
        else:
            index.add(item.pk, quotes.compute(entry.version.text))
            texts[item.pk], by_id[item.pk] = entry.version.text, item
        items.append(item)
    return items
