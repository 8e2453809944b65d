"""Reads for datasets: what each person may see, and the contributors' view of their earnings."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, TypedDict

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.shortcuts import get_object_or_404

from accounts.models import Organisation, User
from datasets.models import (
    Dataset,
    DatasetItem,
    DatasetLicence,
    DatasetNotice,
    DatasetStatus,
    ItemStatus,
    SaleShare,
    Snapshot,
    SnapshotItem,
    TrainingOptOut,
)


def datasets_visible_to(*, user: User) -> QuerySet[Dataset]:
    """Open datasets and any with a snapshot, to everyone signed in; closed ones also to their curator and
    contributors."""
    mine = Q(curator=user) | Q(items__contributor=user) | Q(created_by=user)
    with_snapshot = Exists(Snapshot.objects.filter(dataset=OuterRef("pk")))
    visible = Dataset.objects.filter(Q(status=DatasetStatus.OPEN) | with_snapshot | mine)
    if user.is_staff:
        visible = Dataset.objects.all()
    return (
        Dataset.objects.filter(pk__in=visible.values("pk"))
        .select_related("curator")
        .annotate(
            included_count=Count("items", filter=Q(items__status=ItemStatus.INCLUDED), distinct=True),
            snapshot_count=Count("snapshots", distinct=True),
        )
        .order_by("-created_at", "-id")  # an aggregate query drops Meta.ordering
    )


def dataset_get_visible(*, user: User, dataset_id: int) -> Dataset:
    return get_object_or_404(datasets_visible_to(user=user), pk=dataset_id)


def items_visible_to(*, user: User, dataset: Dataset) -> QuerySet[DatasetItem]:
    """The curator (and staff) see every item; contributors see their own and the included ones; others
    see the included items."""
    items = DatasetItem.objects.filter(dataset=dataset).select_related(
        "work", "contributor", "asset__blob", "text_version"
    )
    curates = dataset.curator_id == user.pk or (dataset.curator_id is None and user.is_staff)
    if curates:
        return items
    return items.filter(Q(status=ItemStatus.INCLUDED) | Q(contributor=user))


def item_get_own(*, user: User, item_id: int) -> DatasetItem:
    return get_object_or_404(
        DatasetItem.objects.select_related("work", "dataset").filter(
            Q(contributor=user) | Q(work__created_by=user)
        ),
        pk=item_id,
    )


def snapshots_of(*, dataset: Dataset) -> QuerySet[Snapshot]:
    return Snapshot.objects.filter(dataset=dataset).annotate(
        licence_count=Count("licences", distinct=True), opt_out_count=Count("opt_outs", distinct=True)
    )


def snapshot_get_visible(*, user: User, snapshot_id: int) -> Snapshot:
    snapshot = get_object_or_404(Snapshot.objects.select_related("dataset"), pk=snapshot_id)
    dataset_get_visible(user=user, dataset_id=snapshot.dataset_id)
    return snapshot


def snapshot_entries(*, snapshot: Snapshot) -> QuerySet[SnapshotItem]:
    return (
        SnapshotItem.objects.filter(snapshot=snapshot)
        .select_related("blob", "work", "text_version")
        .prefetch_related("opt_outs")
        .order_by("position")
    )


def organisations_of(*, user: User) -> QuerySet[Organisation]:
    return Organisation.objects.filter(membership__user=user).order_by("id")


def licences_visible_to(*, user: User) -> QuerySet[DatasetLicence]:
    return DatasetLicence.objects.filter(organisation__membership__user=user).select_related(
        "snapshot", "snapshot__dataset", "organisation"
    )


def licence_get_visible(*, user: User, licence_id: int) -> DatasetLicence:
    return get_object_or_404(licences_visible_to(user=user), pk=licence_id)


def licence_of(*, organisation: Organisation, snapshot: Snapshot) -> DatasetLicence | None:
    return DatasetLicence.objects.filter(organisation=organisation, snapshot=snapshot).first()


def notices_of(*, user: User) -> QuerySet[DatasetNotice]:
    return DatasetNotice.objects.filter(user=user).select_related("dataset", "item")


def opt_outs_of(*, user: User) -> QuerySet[TrainingOptOut]:
    return TrainingOptOut.objects.filter(Q(user=user) | Q(work__created_by=user)).select_related("work")


class Contribution(TypedDict):
    dataset: Dataset
    items: int
    included: int
    excluded: int
    opted_out: int
    snapshots_sold: int
    licences: int
    currency: str
    earned_minor: int


def contributions_of(*, user: User) -> list[Contribution]:
    """Per dataset the user contributed to: their items by status, the snapshots holding their items that
    were sold, and what the sales paid their works (before the platform fee and each work's split)."""
    counts = (
        DatasetItem.objects.filter(contributor=user)
        .values("dataset")
        .annotate(
            total=Count("id"),
            included=Count("id", filter=Q(status=ItemStatus.INCLUDED)),
            excluded=Count("id", filter=Q(status=ItemStatus.EXCLUDED)),
            opted_out=Count("id", filter=Q(status=ItemStatus.OPTED_OUT)),
        )
    )
    sold = (
        SnapshotItem.objects.filter(contributor=user, snapshot__licences__isnull=False)
        .values("snapshot__dataset")
        .annotate(
            snapshots=Count("snapshot", distinct=True), licences=Count("snapshot__licences", distinct=True)
        )
    )
    earned = (
        SaleShare.objects.filter(contributor=user, work__isnull=False)
        .values("licence__snapshot__dataset", "currency")
        .annotate(total=Sum("amount_minor"))
    )
    sold_by: dict[int, dict[str, Any]] = {row["snapshot__dataset"]: dict(row) for row in sold}
    earned_by: dict[int, tuple[str, int]] = {}
    for earned_row in earned:
        earned_by[earned_row["licence__snapshot__dataset"]] = (
            earned_row["currency"],
            int(earned_row["total"] or 0),
        )
    datasets = {d.pk: d for d in Dataset.objects.filter(pk__in=[row["dataset"] for row in counts])}
    result: list[Contribution] = []
    for row in counts:
        dataset = datasets[row["dataset"]]
        currency, amount = earned_by.get(dataset.pk, (dataset.currency, 0))
        sold_row = sold_by.get(dataset.pk, {})
        result.append(
            {
                "dataset": dataset,
                "items": row["total"],
                "included": row["included"],
                "excluded": row["excluded"],
                "opted_out": row["opted_out"],
                "snapshots_sold": int(sold_row.get("snapshots", 0)),
                "licences": int(sold_row.get("licences", 0)),
                "currency": currency,
                "earned_minor": amount,
            }
        )
    result.sort(key=lambda c: -c["dataset"].pk)
    return result


def curator_earnings(*, user: User) -> list[dict[str, Any]]:
    """What the curator's share paid the user, per dataset and currency."""
    rows = (
        SaleShare.objects.filter(contributor=user, work__isnull=True)
        .values("licence__snapshot__dataset", "licence__snapshot__dataset__title", "currency")
        .annotate(total=Sum("amount_minor"))
        .order_by("licence__snapshot__dataset")
    )
    return [
        {
            "dataset": row["licence__snapshot__dataset"],
            "title": row["licence__snapshot__dataset__title"],
            "currency": row["currency"],
            "amount_minor": int(row["total"] or 0),
        }
        for row in rows
    ]


def works_contributable_by(*, user: User, dataset: Dataset) -> list[Any]:
    """The user's works of a kind the dataset takes that are not in it yet."""
    from catalog.models import Work, WorkStatus

    kinds = {
        "image": ["image"],
        "audio": ["audio"],
        "voice": ["voice", "audio"],
        "text": ["article", "lyrics", "book"],
    }[dataset.kind]
    present = DatasetItem.objects.filter(dataset=dataset).values("work_id")
    return list(
        Work.objects.filter(created_by=user, kind__in=kinds, status=WorkStatus.PUBLISHED)
        .exclude(pk__in=present)
        .order_by("title")
    )


def sale_shares_by_contributor(*, licence: DatasetLicence) -> dict[int | None, int]:
    totals: dict[int | None, int] = defaultdict(int)
    for contributor, amount in SaleShare.objects.filter(licence=licence).values_list(
        "contributor_id", "amount_minor"
    ):
        totals[contributor] += amount
    return dict(totals)
