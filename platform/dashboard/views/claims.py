"""Claims: the list, a claim's page, and deciding, disputing and appealing."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from catalog import selectors as catalog
from catalog import tracing
from catalog.models import (
    Claim,
    ClaimStatus,
)
from common.problems import ApiError
from dashboard import forms
from dashboard import selectors as dashboard
from dashboard.web import current_user, paginate
from matching import services as media_services
from royalties import claims as claim_money

TEXT_MATCH_KINDS = (media_services.TextMatchKind.QUOTE, media_services.TextMatchKind.PARAPHRASE)


# Claims ------------------------------------------------------------------------------------------------


@login_required
@require_GET
def claims(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    side = request.GET.get("side", "mine")
    visible = catalog.claims_visible_to(user=user)
    items = visible.filter(respondent=user) if side == "against" else visible.filter(work__created_by=user)
    status = request.GET.get("status", "")
    if status in ClaimStatus.values:
        items = items.filter(status=status)
    return render(
        request,
        "dashboard/claims.html",
        {"page": paginate(request, items), "side": side, "status": status, "statuses": ClaimStatus.choices},
    )


def _claim_context(request: HttpRequest, claim: Claim, **extra: Any) -> dict[str, Any]:
    user = current_user(request)
    subject = claim.subject_asset
    # The respondent is shown the claimed work's file that matched, and no other file of that work.
    registered = claim.matched_asset
    if registered is None and claim.respondent_id != user.pk:
        registered = dashboard.preview_asset_of(work=claim.work, kind=subject.blob.kind if subject else None)
    context = {
        "claim": claim,
        "registered": registered,
        "subject": subject,
        "manages": claim.work.created_by_id == user.pk,
        "respondent": claim.respondent_id == user.pk,
        "can_decide": claim.status in (ClaimStatus.OPEN, ClaimStatus.DECIDED),
        "can_appeal": tracing.appeal_open_to(claim) == user.pk,
        "decide_form": forms.ClaimDecideForm(initial={"decision": claim.decision}),
        "dispute_form": forms.DisputeForm(),
        "appeal_form": forms.AppealForm(),
        "events": claim.events.select_related("actor").all(),
        "text_passages": catalog.claim_text_passages(claim=claim),
        "is_text_match": claim.match_kind in TEXT_MATCH_KINDS,
    }
    context.update(extra)
    return context


@login_required
@require_GET
def claim_detail(request: HttpRequest, claim_id: int) -> HttpResponse:
    claim = catalog.claim_get_visible(user=current_user(request), claim_id=claim_id)
    return render(request, "dashboard/claim_detail.html", _claim_context(request, claim))


@login_required
@require_POST
def claim_decide(request: HttpRequest, claim_id: int) -> HttpResponse:
    user = current_user(request)
    claim = catalog.claim_get_visible(user=user, claim_id=claim_id)
    form = forms.ClaimDecideForm(request.POST)
    if form.is_valid():
        try:
            price = form.cleaned_data["price_minor"]
            claim_money.claim_decide(
                claim=claim,
                user=user,
                decision=form.cleaned_data["decision"],
                price=None
                if price is None
                else claim_money.NamedPrice(price, form.cleaned_data["currency"] or "USD"),
            )
        except ApiError as exc:
            forms.attach_problem(
                form,
                exc,
                {
                    "invalid_decision": "decision",
                    "price_required": "price_minor",
                    "price_set_by_terms": "price_minor",
                    "amount_out_of_range": "price_minor",
                    "unsupported_currency": "currency",
                },
            )
        else:
            messages.success(request, "Decision recorded.")
            return redirect("dashboard:claim", claim_id=claim.pk)
    return render(
        request, "dashboard/claim_detail.html", _claim_context(request, claim, decide_form=form), status=400
    )


@login_required
@require_POST
def claim_dispute(request: HttpRequest, claim_id: int) -> HttpResponse:
    user = current_user(request)
    claim = catalog.claim_get_visible(user=user, claim_id=claim_id)
    form = forms.DisputeForm(request.POST)
    if form.is_valid():
        try:
            tracing.claim_dispute(claim=claim, user=user, statement=form.cleaned_data["statement"])
        except ApiError as exc:
            forms.attach_problem(form, exc, {"statement_required": "statement"})
        else:
            messages.success(request, "Your dispute is filed; the operator will review it.")
            return redirect("dashboard:claim", claim_id=claim.pk)
    return render(
        request, "dashboard/claim_detail.html", _claim_context(request, claim, dispute_form=form), status=400
    )


@login_required
@require_POST
def claim_appeal(request: HttpRequest, claim_id: int) -> HttpResponse:
    user = current_user(request)
    claim = catalog.claim_get_visible(user=user, claim_id=claim_id)
    form = forms.AppealForm(request.POST)
    if form.is_valid():
        try:
            tracing.claim_appeal(claim=claim, user=user, statement=form.cleaned_data["statement"])
        except ApiError as exc:
            forms.attach_problem(form, exc, {"statement_required": "statement"})
            messages.error(request, str(exc.detail))  # the form may not be on the page any more
        else:
            messages.success(
                request, "Your appeal is filed; the operator will resolve the claim again, for good."
            )
            return redirect("dashboard:claim", claim_id=claim.pk)
    return render(
        request, "dashboard/claim_detail.html", _claim_context(request, claim, appeal_form=form), status=400
    )
