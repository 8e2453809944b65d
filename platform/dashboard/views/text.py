"""Dashboard pages for text: the passages vendors bought by retrieval, as their creators and as the
buying organisation see them. Thin: selectors to read; nobody sees a passage of someone else's."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from access import selectors as access
from accounts.models import Role
from catalog import selectors as catalog
from catalog.models import TEXT_KINDS
from dashboard import selectors as dashboard
from dashboard.web import current_user

PAGE_SIZE = 20
RETRIEVALS_PAGE_SIZE = 10


@login_required
@require_GET
def retrieved_passages(request: HttpRequest) -> HttpResponse:
    """Creators: the passages of their works that were bought, filterable by work. Vendors: their
    organisations' retrievals, each with its passages and total. Others: a plain 403."""
    user = current_user(request)
    if user.role == Role.CREATOR:
        works = catalog.works_visible_to(user=user).filter(kind__in=TEXT_KINDS).order_by("title", "pk")
        chosen = request.GET.get("work", "")
        work_id = int(chosen) if chosen.isdigit() and works.filter(pk=int(chosen)).exists() else None
        sold = dashboard.passages_sold_of_works(user=user, work_id=work_id)
        page = Paginator(sold, PAGE_SIZE).get_page(request.GET.get("page"))
        context: dict[str, Any] = {
            "side": "creator",
            "page": page,
            "works": works,
            "work_id": work_id,
            "excerpt_characters": dashboard.PASSAGE_EXCERPT_CHARACTERS,
        }
        return render(request, "dashboard/retrieved_passages.html", context)
    if user.role == Role.VENDOR:
        retrievals = access.retrievals_of_organisations_of(user=user)
        bought = Paginator(retrievals, RETRIEVALS_PAGE_SIZE).get_page(request.GET.get("page"))
        context = {
            "side": "vendor",
            "page": bought,
            "groups": dashboard.retrievals_bought_by(user=user, retrievals=list(bought)),
            "excerpt_characters": dashboard.PASSAGE_EXCERPT_CHARACTERS,
        }
        return render(request, "dashboard/retrieved_passages.html", context)
    return render(
        request,
        "dashboard/not_for_role.html",
        {"what": "The retrieved passages page", "role": f"{Role.CREATOR.label} or {Role.VENDOR.label}"},
        status=403,
    )
