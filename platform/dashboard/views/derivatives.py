"""Registering a derivative work under the grants it builds on."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from catalog import services as catalog_services
from common.problems import ApiError
from dashboard import forms
from dashboard import selectors as dashboard
from dashboard.web import current_user

DERIVATIVE_FIELDS = {
    "royalty_stack_over_100": "grants",
    "grant_not_found": "grants",
    "grant_not_active": "grants",
    "derivative_not_allowed": "grants",
    "offer_expired": "grants",
    "invalid_kind": "kind",
    "invalid_tags": "tags",
}


# Derivatives -------------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def derivative_new(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    usable = dashboard.derivative_grants_of(user=user)
    preselected = request.GET.get("grant")
    form = forms.DerivativeForm(
        request.POST or None,
        grants=usable,
        initial={"grants": [preselected] if preselected and preselected.isdigit() else []},
    )
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        parents = [
            catalog_services.ParentClaim(work_id=grant.offer.work_id, grant_id=grant.pk)
            for grant in data.pop("grants")
        ]
        try:
            work = catalog_services.derivative_create(user=user, parents=parents, **data)
        except ApiError as exc:
            forms.attach_problem(form, exc, DERIVATIVE_FIELDS)
        else:
            messages.success(request, f"“{work.title}” is registered as a derivative. Add its files next.")
            return redirect("dashboard:work", work_id=work.pk)
    return render(request, "dashboard/derivative_new.html", {"form": form, "has_grants": usable.exists()})
