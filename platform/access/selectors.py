from __future__ import annotations

from datetime import date
from typing import Any

from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDate

from access.models import AccessEvent, Retrieval, RetrievalPassage
from accounts.models import User
from catalog.selectors import works_visible_to


def accesses_visible_to(*, user: User) -> QuerySet[AccessEvent]:
    """A vendor's members see their organisation's accesses; creators see the accesses of their works."""
    from django.db.models import Q

    return AccessEvent.objects.filter(
        Q(organisation__membership__user=user) | Q(work__in=works_visible_to(user=user))
    ).distinct()


def usage(*, user: User, since: date | None = None, until: date | None = None) -> list[dict[str, Any]]:
    """Accesses and spend by work, use class, currency and day."""
    events = accesses_visible_to(user=user)
    if since is not None:
        events = events.filter(created_at__date__gte=since)
    if until is not None:
        events = events.filter(created_at__date__lte=until)
    rows = (
        AccessEvent.objects.filter(pk__in=events.values("pk"))
        .annotate(day=TruncDate("created_at"))
        .values("day", "work", "work__title", "use_class", "currency")
        .annotate(accesses=Count("id"), spend_minor=Sum("price_minor"))
        .order_by("-day", "work", "use_class")
    )
    return [dict(row) for row in rows]


def receipts_of(*, organisation_ids: list[int], access_ids: list[str]) -> dict[str, int]:
    """The work each named receipt (access id) paid for, among the given organisations' accesses."""
    events = AccessEvent.objects.filter(organisation_id__in=organisation_ids, access_id__in=access_ids)
    return {str(access_id): work_id for access_id, work_id in events.values_list("access_id", "work_id")}


def retrieval_receipts_of(*, organisation_ids: list[int], retrieval_ids: list[str]) -> dict[str, set[int]]:
    """The works each named retrieval receipt paid passages of, among the given organisations' retrievals."""
    rows = RetrievalPassage.objects.filter(
        retrieval__organisation_id__in=organisation_ids, retrieval__retrieval_id__in=retrieval_ids
    ).values_list("retrieval__retrieval_id", "work_id")
    found: dict[str, set[int]] = {
        str(rid): set()
        for rid in Retrieval.objects.filter(
            organisation_id__in=organisation_ids, retrieval_id__in=retrieval_ids
        ).values_list("retrieval_id", flat=True)
    }
    for retrieval_id, work_id in rows:
        found[str(retrieval_id)].add(work_id)
    return found


def retrieved_passages_visible_to(*, user: User) -> QuerySet[RetrievalPassage]:
    """Passages sold by retrieval: a vendor's members see their organisation's; creators those of their
    works (which passage of which version, how many tokens, at what price, when)."""
    from django.db.models import Q

    return (
        RetrievalPassage.objects.filter(
            Q(retrieval__organisation__membership__user=user) | Q(work__in=works_visible_to(user=user))
        )
        .select_related("retrieval", "work", "text_version")
        .distinct()
        .order_by("-retrieval__created_at", "retrieval_id", "position")
    )


def retrievals_of_organisations_of(*, user: User) -> QuerySet[Retrieval]:
    """The retrievals (text purchases, each one receipt) of the organisations the user belongs to, newest
    first."""
    return (
        Retrieval.objects.filter(organisation__membership__user=user)
        .select_related("organisation")
        .defer("response_body")
        .distinct()
        .order_by("-created_at", "-id")
    )
