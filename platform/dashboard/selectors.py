"""Reads the dashboard needs that the catalog's selectors do not offer. Each one keeps the same
visibility rules as the API: what a user may not see answers 404."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import TruncWeek
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts.models import User
from catalog import selectors as catalog
from catalog.models import (
    Asset,
    Claim,
    ClaimStatus,
    Grant,
    GrantStatus,
    OfferUse,
    UseClass,
    Work,
    WorkParent,
)


def asset_get_viewable(*, user: User | None, asset_id: int) -> Asset:
    """An asset's bytes may be shown to the people who can see its work, to anyone when the work is in the
    public catalogue, and to both parties of a claim that names the asset or its work."""
    assets = Asset.objects.select_related("blob", "work")
    public_work_ids = catalog.offers_public().values("work_id")
    rule = Q(work_id__in=public_work_ids)
    if user is not None and user.is_authenticated:
        claims = catalog.claims_visible_to(user=user)
        rule |= (
            Q(work__in=catalog.works_visible_to(user=user))
            | Q(pk__in=claims.values("subject_asset_id"))
            | Q(work_id__in=claims.values("work_id"))
        )
    return get_object_or_404(assets.filter(rule), pk=asset_id)


def preview_asset_of(*, work: Work, kind: str | None = None) -> Asset | None:
    """The asset that represents a work in lists: its first file (of the given media kind if named)."""
    assets = catalog.assets_of(work=work)
    if kind:
        assets = assets.filter(blob__kind=kind)
    return assets.first()


def derivative_links_of(*, work: Work) -> QuerySet[WorkParent]:
    """The works registered as derived from this one: the owner sees what was made under their terms."""
    return WorkParent.objects.filter(parent=work).select_related("child", "child__created_by", "grant")


def grants_on_work(*, work: Work) -> QuerySet[Grant]:
    return Grant.objects.filter(offer__work=work).select_related("offer", "licensee", "organisation")


def grants_held_by(*, user: User) -> QuerySet[Grant]:
    return (
        Grant.objects.filter(Q(licensee=user) | Q(organisation__membership__user=user))
        .distinct()
        .select_related("offer", "offer__work", "offer__work__created_by")
    )


def grants_on_works_of(*, user: User) -> QuerySet[Grant]:
    return Grant.objects.filter(offer__work__created_by=user).select_related(
        "offer", "offer__work", "licensee", "organisation"
    )


def derivative_grants_of(*, user: User) -> QuerySet[Grant]:
    """Active grants the user holds whose terms allow derivative works: what a derivative may name."""
    allows = OfferUse.objects.filter(offer=OuterRef("offer"), use_class=UseClass.DERIVATIVE)
    return grants_held_by(user=user).filter(Exists(allows), status=GrantStatus.ACTIVE)


def claims_disputed() -> QuerySet[Claim]:
    return Claim.objects.filter(status=ClaimStatus.DISPUTED).select_related(
        "work", "work__created_by", "respondent", "subject_asset"
    )


def claim_open_count(*, user: User) -> int:
    return catalog.claims_visible_to(user=user).filter(work__created_by=user, status=ClaimStatus.OPEN).count()


def weekly_activity(*, user: User, weeks: int = 12) -> dict[str, list[int] | list[str]]:
    """Works registered, files uploaded and licences granted on the user's works, per week (Monday first)."""
    today = timezone.now().date()
    first = today - timedelta(days=today.weekday() + 7 * (weeks - 1))
    labels = [first + timedelta(weeks=i) for i in range(weeks)]
    works = catalog.works_visible_to(user=user)

    def per_week(queryset: QuerySet, field: str) -> list[int]:
        rows = (
            queryset.filter(**{f"{field}__date__gte": first})
            .annotate(week=TruncWeek(field))
            .values("week")
            .annotate(n=Count("pk", distinct=True))
        )
        counts = {row["week"].date(): row["n"] for row in rows}
        return [counts.get(day, 0) for day in labels]

    return {
        "labels": [day.isoformat() for day in labels],
        "works": per_week(works, "created_at"),
        "assets": per_week(Asset.objects.filter(work__in=works), "created_at"),
        "grants": per_week(Grant.objects.filter(offer__work__created_by=user), "created_at"),
    }
