"""Snapshots: a dataset's items written once, each with its licence and provenance."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

from django.db import transaction

from accounts.models import User
from catalog.models import (
    Offer,
    SplitShare,
    SplitSheetStatus,
)
from common import clock
from common.problems import Conflict
from datasets import delivery
from datasets.models import (
    Dataset,
    DatasetItem,
    DatasetKind,
    ItemStatus,
    Snapshot,
    SnapshotItem,
)
from datasets.services.curation import locked_for_curator
from datasets.services.eligibility import member_terms, refusals, sale_price, sale_weight
from datasets.services.notices import notify
from datasets.terms import Looser, price_is_looser
from media.text import passages


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
    dataset = locked_for_curator(dataset, user)
    if dataset.expires_at is not None and dataset.expires_at <= clock.now():
        raise Conflict("The dataset's terms have expired; publish new terms first.", code="dataset_expired")
    items = list(
        DatasetItem.objects.filter(dataset=dataset, status=ItemStatus.INCLUDED)
        .select_related("work", "asset__blob", "text_version")
        .order_by("id")
    )
    weights = {item.pk: sale_weight(dataset, item) for item in items}
    offers: dict[int, Offer] = {}
    kept: list[DatasetItem] = []
    checked = refusals(dataset, list({item.work_id: item.work for item in items}.values()))
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
        price = sale_price(dataset, len(kept))
        under = [
            item
            for item in kept
            if price_is_looser(
                price_minor=price,
                curator_share_bps=dataset.curator_share_bps,
                weight=weights[item.pk],
                total_weight=total,
                floor_minor=member_terms(offers[item.work_id]).training_floor_minor,
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
        price_minor=sale_price(dataset, len(kept)),
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
    notify(
        item.contributor_id,
        dataset,
        item,
        refusal.code,
        f"“{item.work.title}” was left out: {refusal.reason}",
    )
