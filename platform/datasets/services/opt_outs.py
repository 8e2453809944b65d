"""Opting out: one item, all of a work's items, and do-not-train flags."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import IntegrityError, transaction
from django.db.models import Q

from accounts.models import User
from catalog.models import (
    SplitShare,
    SplitSheetStatus,
    Work,
)
from common.problems import NotFound
from datasets.models import (
    DatasetItem,
    ItemStatus,
    SnapshotItem,
    SnapshotOptOut,
    TrainingOptOut,
)


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
