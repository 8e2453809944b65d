"""Reads for collections (a style, a voice, a text collection): their member works with a file to show
for each, and the works a manager may add."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch, QuerySet

from accounts.models import User
from catalog import selectors as catalog
from catalog.models import COLLECTION_KINDS, TEXT_KINDS, Asset, Work, WorkKind


def is_collection(work: Work) -> bool:
    return work.kind in COLLECTION_KINDS or work.kind == WorkKind.TEXT_COLLECTION


@dataclass(frozen=True)
class Member:
    work: Work
    asset: Asset | None  # the file shown for it, when the viewer may see the member work
    files: int


def members_of(*, collection: Work, viewer: User) -> list[Member]:
    """Each member with its first file; a member the viewer cannot see (a co-owner of the style is not
    one of its members' owners) is listed by title, without its file."""
    visible = set(catalog.works_visible_to(user=viewer).values_list("pk", flat=True))
    members = collection.members.select_related("created_by").prefetch_related(
        Prefetch("assets", queryset=Asset.objects.select_related("blob").order_by("pk"))
    )
    shown: list[Member] = []
    for member in members.order_by("title", "pk"):
        assets = list(member.assets.all())
        seen = member.pk in visible or viewer.is_staff
        shown.append(Member(member, assets[0] if assets and seen else None, len(assets)))
    return shown


def member_candidates(*, collection: Work) -> QuerySet[Work]:
    """The manager's own works that may join this collection (not itself, not another collection)."""
    works = Work.objects.filter(created_by_id=collection.created_by_id).exclude(pk=collection.pk)
    if collection.kind == WorkKind.VOICE:
        return works.filter(kind__in=[WorkKind.AUDIO, WorkKind.VOICE])
    if collection.kind == WorkKind.TEXT_COLLECTION:
        return works.filter(kind__in=sorted(TEXT_KINDS))
    return works.filter(kind__in=[WorkKind.IMAGE, WorkKind.AUDIO])
