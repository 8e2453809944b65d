"""Reads for the public pages (no account needed): a work is public when its terms are in the catalogue
or it is released for sale; nothing else of it, and never an original file, is shown to visitors."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from catalog import selectors as catalog
from catalog.models import Asset, Offer, Work, WorkParent
from studio import selectors as studio
from studio.models import Release


def public_work_get(*, work_id: int) -> Work:
    listed = catalog.offers_public().filter(work_id=work_id).exists()
    released = studio.releases_on_sale().filter(work_id=work_id).exists()
    if not (listed or released):
        raise Http404
    return get_object_or_404(Work.objects.select_related("created_by"), pk=work_id)


def public_offer_of(*, work: Work) -> Offer | None:
    return catalog.offers_public().filter(work_id=work.pk).first()


def on_sale_release_of(*, work: Work) -> Release | None:
    return studio.releases_on_sale().filter(work_id=work.pk).first()


def credited_parents_of(*, work: Work) -> QuerySet[WorkParent]:
    """The works a derivative credits, with each one's share of what it earns."""
    return WorkParent.objects.filter(child=work).select_related("parent", "parent__created_by").order_by("pk")


def preview_asset_of_public(*, work: Work) -> Asset | None:
    """The file a public page previews: the release's file for a release, else the work's first file."""
    release = studio.releases_on_sale().filter(work_id=work.pk).first()
    if release is not None:
        return studio.release_file(release=release)
    return Asset.objects.filter(work=work).select_related("blob").order_by("pk").first()


def releases_matching(*, query: str = "", kind: str = "") -> QuerySet[Release]:
    releases = studio.releases_on_sale()
    if query:
        releases = releases.filter(work__title__icontains=query) | releases.filter(
            released_by__display_name__icontains=query
        )
    if kind:
        releases = releases.filter(work__kind=kind)
    return releases.order_by("-created_at", "-id")
