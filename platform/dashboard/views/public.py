"""Public pages, no account needed: a page per release and per public work that can be shared, with its
title, creator, the works it credits, its price and a Buy button (to log in first, then checkout). Only
previews are served here: the original is for owners, licensees and buyers, through the content URLs."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from access import content as access_content
from accounts.models import User
from common.problems import ApiError
from dashboard import plain_words
from dashboard import selectors_public as public
from studio import selectors as studio


def _viewer(request: HttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) else None


@require_GET
def release_page(request: HttpRequest, release_id: int) -> HttpResponse:
    try:
        release = studio.release_get_public(release_id=release_id)
    except ApiError:
        raise Http404 from None
    viewer = _viewer(request)
    own = viewer is not None and release.released_by_id == viewer.pk
    checkout = reverse("dashboard:create-release", args=[release.pk])
    return render(
        request,
        "dashboard/public/release.html",
        {
            "release": release,
            "work": release.work,
            "parents": public.credited_parents_of(work=release.work),
            "preview": public.preview_asset_of_public(work=release.work),
            "own": own,
            "sales": studio.release_sales_count(release=release) if own else None,
            "bought": viewer is not None and studio.may_download(user=viewer, release=release),
            "checkout_url": checkout,
            "login_url": f"{reverse('login')}?next={checkout}",
            "share_url": request.build_absolute_uri(reverse("release-public", args=[release.pk])),
        },
    )


@require_GET
def work_page(request: HttpRequest, work_id: int) -> HttpResponse:
    work = public.public_work_get(work_id=work_id)
    offer = public.public_offer_of(work=work)
    release = public.on_sale_release_of(work=work)
    viewer = _viewer(request)
    return render(
        request,
        "dashboard/public/work.html",
        {
            "work": work,
            "offer": offer,
            "terms": plain_words.describe(plain_words.terms_of(offer)) if offer else [],
            "release": release,
            "parents": public.credited_parents_of(work=work),
            "preview": public.preview_asset_of_public(work=work),
            "own": viewer is not None and work.created_by_id == viewer.pk,
            "share_url": request.build_absolute_uri(reverse("work-public", args=[work.pk])),
        },
    )


@require_GET
def work_preview(request: HttpRequest, work_id: int) -> FileResponse:
    """The public work's preview (a reduced, marked image or a short clip), never its original."""
    work = public.public_work_get(work_id=work_id)
    asset = public.preview_asset_of_public(work=work)
    if asset is None:
        raise Http404
    try:
        name, media_type = access_content.preview_of(asset.blob)
    except ApiError:
        raise Http404 from None
    response = FileResponse(access_content.open_preview(name), content_type=media_type)
    response["Content-Disposition"] = "inline"
    response["Cache-Control"] = "public, max-age=3600"
    return response
