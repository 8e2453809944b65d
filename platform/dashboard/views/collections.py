"""A collection's member works (a style's artworks, a voice's recordings): its manager adds and removes
them from the work's page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from catalog import selectors as catalog
from catalog import services as catalog_services
from common.problems import ApiError
from dashboard.web import current_user


@login_required
@require_POST
def work_members(request: HttpRequest, work_id: int) -> HttpResponse:
    """The checked works become the members (the service checks each is the manager's own and of a kind
    the collection holds; anything refused changes nothing)."""
    work = catalog.work_get_managed(user=current_user(request), work_id=work_id)
    values = request.POST.getlist("member")
    back = redirect(reverse("dashboard:work", args=[work.pk]) + "#members")
    if not all(value.isdigit() and len(value) < 12 for value in values):
        messages.error(request, "Choose works from the list.")
        return back
    try:
        work = catalog_services.work_members_set(collection=work, member_ids=[int(value) for value in values])
    except ApiError as exc:
        messages.error(request, str(exc.detail))
    else:
        count = work.members.count()
        messages.success(request, f"“{work.title}” now has {count} member work{'s' if count != 1 else ''}.")
    return back
