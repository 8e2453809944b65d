"""Claims: the list, a claim's page, and deciding, disputing and appealing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from access import content as access_content
from catalog import selectors as catalog
from catalog import tracing
from catalog.models import (
    Claim,
    ClaimDecision,
    ClaimStatus,
)
from common.problems import ApiError
from dashboard import forms, match_words, plain_words
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
        {
            "page": paginate(request, items),
            "side": side,
            "status": status,
            "statuses": ClaimStatus.choices,
            "decisions": ClaimDecision.choices,
            "decidable": DECIDABLE,
        },
    )


DECIDABLE = (ClaimStatus.OPEN, ClaimStatus.DECIDED)
DECISION_FIELDS = {
    "invalid_decision": "decision",
    "price_required": "price_minor",
    "price_set_by_terms": "price_minor",
    "amount_out_of_range": "price_minor",
    "unsupported_currency": "currency",
}


def _subject_kind(claim: Claim) -> str | None:
    for source in (claim.subject_asset, claim.subject_output, claim.subject_partner_upload):
        blob = getattr(source, "blob", None) if source is not None else None
        if blob is not None:
            return str(blob.kind)
    return None


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
        "facts": match_words.facts_of(claim),
        "subject_kind": _subject_kind(claim),
        "decisions": ClaimDecision.choices,
        "asks_price": claim.subject_output_id is not None,
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
    form = forms.ClaimDecideForm(_with_price_in_minor_units(request))
    manages = claim.work.created_by_id == user.pk
    if form.is_valid() and manages and _needs_confirmation(request, form.cleaned_data["decision"]):
        return render(request, "dashboard/claim_block_confirm.html", {"claims": [claim], "single": True})
    if form.is_valid():
        try:
            price = form.cleaned_data["price_minor"]
            claim = claim_money.claim_decide(
                claim=claim,
                user=user,
                decision=form.cleaned_data["decision"],
                price=None
                if price is None
                else claim_money.NamedPrice(price, form.cleaned_data["currency"] or "USD"),
            )
        except ApiError as exc:
            forms.attach_problem(form, exc, DECISION_FIELDS)
        else:
            messages.success(request, f"Decision recorded: {ClaimDecision(claim.decision).label}.")
            return redirect("dashboard:claim", claim_id=claim.pk)
    return render(
        request, "dashboard/claim_detail.html", _claim_context(request, claim, decide_form=form), status=400
    )


def _with_price_in_minor_units(request: HttpRequest) -> Any:
    """The page asks for a price as people write it ('2.50'); the form and the service take minor units.
    An amount that is not one (or has more decimals than the currency) is passed on as is, for the form
    to refuse."""
    data = request.POST.copy()
    text = data.get("price", "").strip().replace(",", "")
    if text:
        currency = data.get("currency") or "USD"
        try:
            amount = Decimal(text).scaleb(plain_words.minor_digits(currency))
        except ArithmeticError:
            amount = Decimal("NaN")
        ok = amount.is_finite() and amount == amount.to_integral_value()
        data["price_minor"] = str(int(amount)) if ok else text
    return data


def _needs_confirmation(request: HttpRequest, decision: str) -> bool:
    """A block takes a copy down at once: it is made only from the confirmation step's button."""
    return decision == ClaimDecision.BLOCK and request.POST.get("confirm") != "block"


@login_required
@require_POST
def claims_bulk(request: HttpRequest) -> HttpResponse:
    """One decision for several claims. Each claim is checked on its own (visible to the user, on a work
    they manage, still open to a decision); one refused does not stop the others, and each result is
    said. A block asks for confirmation first and changes nothing until it is confirmed."""
    user = current_user(request)
    decision = request.POST.get("decision", "")
    ids = sorted(
        {int(value) for value in request.POST.getlist("claim") if value.isdigit() and len(value) < 12}
    )
    back = redirect("dashboard:claims")
    if decision not in ClaimDecision.values:
        messages.error(request, "Choose a decision: monetize, track or block.")
        return back
    if not ids:
        messages.error(request, "Select at least one claim.")
        return back
    found = {claim.pk: claim for claim in catalog.claims_visible_to(user=user).filter(pk__in=ids)}
    if _needs_confirmation(request, decision):
        shown = [claim for claim in found.values() if claim.work.created_by_id == user.pk]
        return render(request, "dashboard/claim_block_confirm.html", {"claims": shown, "single": False})
    done: list[int] = []
    refused: list[str] = []
    for claim_id in ids:
        claim = found.get(claim_id)
        if claim is None:
            refused.append(f"#{claim_id}: no such claim of yours")
            continue
        try:
            claim_money.claim_decide(claim=claim, user=user, decision=decision)
        except ApiError as exc:
            refused.append(f"#{claim_id}: {exc.detail}")
        else:
            done.append(claim_id)
    label = ClaimDecision(decision).label.split(":")[0]
    if done:
        messages.success(request, f"{label}: {len(done)} claim{'s' if len(done) != 1 else ''} decided.")
    if refused:
        messages.error(request, "Not decided: " + "; ".join(refused) + ".")
    return back


@login_required
@require_GET
def claim_subject_media(request: HttpRequest, claim_id: int) -> FileResponse:
    """The matched upload or output as both parties see it: always its preview, never the original (the
    claimant holds no right to the copy's bytes)."""
    claim = catalog.claim_get_visible(user=current_user(request), claim_id=claim_id)
    source = claim.subject_asset or claim.subject_output or claim.subject_partner_upload
    blob = getattr(source, "blob", None) if source is not None else None
    if blob is None:
        raise Http404
    try:
        name, media_type = access_content.preview_of(blob)
    except ApiError:
        raise Http404 from None
    response = FileResponse(access_content.open_preview(name), content_type=media_type)
    response["Content-Disposition"] = "inline"
    response["Cache-Control"] = "private, max-age=3600"
    response["Vary"] = "Cookie"
    return response


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
