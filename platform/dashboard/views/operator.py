"""Operator pages."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from common.problems import ApiError
from dashboard import forms
from dashboard import selectors as dashboard
from dashboard.web import current_user, paginate, staff_required
from royalties import claims as claim_money

# Operator ----------------------------------------------------------------------------------------------


@staff_required
@require_http_methods(["GET", "POST"])
def staff_disputes(request: HttpRequest) -> HttpResponse:
    """Claims in dispute, oldest first, each with a form to resolve it."""
    failed: forms.ResolveForm | None = None
    if request.method == "POST":
        claim = get_object_or_404(dashboard.claims_disputed(), pk=request.POST.get("claim"))
        form = forms.ResolveForm(request.POST, auto_id=f"claim{claim.pk}-%s")
        if form.is_valid():
            try:
                claim_money.claim_resolve(
                    claim=claim,
                    operator=current_user(request),
                    resolution=form.cleaned_data["resolution"],
                    statement=form.cleaned_data["statement"],
                )
            except ApiError as exc:
                forms.attach_problem(form, exc, {"invalid_resolution": "resolution"})
            else:
                messages.success(request, f"Claim #{claim.pk} is resolved.")
                return redirect("dashboard:staff-disputes")
        failed = form
    items = dashboard.claims_disputed().prefetch_related("events__actor").order_by("updated_at", "id")
    page = paginate(request, items)
    rows = [
        (
            claim,
            failed
            if failed is not None and str(claim.pk) == request.POST.get("claim")
            else forms.ResolveForm(auto_id=f"claim{claim.pk}-%s"),
        )
        for claim in page
    ]
    return render(
        request,
        "dashboard/staff_disputes.html",
        {"page": page, "rows": rows},
        status=400 if failed is not None else 200,
    )
