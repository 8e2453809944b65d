"""Licence terms: the offer form with its preview, browsing offers, accepting them, and grants."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Role, User
from catalog import rsl
from catalog import selectors as catalog
from catalog import services as catalog_services
from catalog.models import (
    GrantStatus,
    Offer,
    OfferStatus,
    UseClass,
    Work,
    WorkKind,
)
from common import clock
from common.currency import format_minor
from common.problems import ApiError
from dashboard import forms, plain_words, selectors_public
from dashboard import selectors as dashboard
from dashboard.web import current_user, paginate
from royalties import licences

OFFER_FIELDS = {
    "invalid_territory": "territories",
    "invalid_expiry": "expires_on",
    "invalid_quota": "quota",
    "invalid_max_vocal_seconds": "max_vocal_seconds",
    "invalid_share": "derivative_share",
    "no_uses": "allow_ai_train",
    "contradictory_terms": "derivative_approval_required",
}


# Offers ------------------------------------------------------------------------------------------------


def _offer_initial(offer: Offer | None) -> dict[str, Any]:
    if offer is None:
        return {}  # nothing allowed and no price until the creator chooses
    digits = plain_words.minor_digits(offer.currency)
    initial: dict[str, Any] = {
        "currency": offer.currency,
        "licence_fee": offer.licence_fee_minor / 10**digits,
        "commercial_use": offer.commercial_use,
        "attribution_required": offer.attribution_required,
        "derivative_share": offer.derivative_share_bps / 100,
        "derivative_approval_required": offer.derivative_approval_required,
        "territories": ", ".join(offer.territories),
        "expires_on": offer.expires_at.date() if offer.expires_at else None,
        "quota": offer.quota,
        "explicit_content_forbidden": not offer.explicit_content_allowed,
        "max_vocal_seconds": offer.max_vocal_seconds,
        "release_approval_required": offer.release_approval_required,
    }
    for use in offer.uses.all():
        name = use.use_class.replace("-", "_")
        initial[f"allow_{name}"] = True
        initial[f"price_{name}"] = use.price_minor / 10**digits
    return initial


class _PreviewUses:
    def __init__(self, uses: dict[str, int], token_prices: dict[str, int]) -> None:
        self._uses = [
            _PreviewUse(use_class, price, token_prices.get(use_class, 0))
            for use_class, price in sorted(uses.items())
        ]

    def all(self) -> list[_PreviewUse]:
        return self._uses


class _PreviewUse:
    def __init__(self, use_class: str, price_minor: int, price_per_1k_tokens_minor: int) -> None:
        self.use_class = use_class
        self.price_minor = price_minor
        self.price_per_1k_tokens_minor = price_per_1k_tokens_minor


class _PreviewOffer:
    """What the RSL renderer reads of an offer, for terms that are not published yet."""

    pk = "next"

    def __init__(self, work: Work, terms: catalog_services.Terms) -> None:
        self.work = work
        self.currency = terms.currency
        self.commercial_use = terms.commercial_use
        self.attribution_required = terms.attribution_required
        self.licence_fee_minor = terms.licence_fee_minor
        self.territories = list(terms.territories)
        self.created_at: datetime = clock.now()
        self.uses = _PreviewUses(terms.uses, terms.token_prices)


@login_required
@require_http_methods(["GET", "POST"])
def offer_new(request: HttpRequest, work_id: int) -> HttpResponse:
    """The terms form, then a review of exactly what will be published (plain words and the RSL
    document), then "Confirm and publish": published versions never change, so nothing is published
    before the creator has seen it."""
    user = current_user(request)
    work = catalog.work_get_managed(user=user, work_id=work_id)
    current = catalog.offers_of(work=work).filter(status=OfferStatus.CURRENT).first()
    form = forms.OfferTermsForm(request.POST or None, initial=_offer_initial(current))
    confirmed = request.POST.get("step") == "confirm"
    if request.method == "POST" and form.is_valid():
        terms = form.terms()
        if request.POST.get("step") == "edit":
            return render(
                request, "dashboard/offer_new.html", {"work": work, "form": form, "current": current}
            )
        if not confirmed:
            document = rsl.render([_PreviewOffer(work, terms)], site_url=settings.SITE_URL)  # type: ignore[list-item]
            return render(
                request,
                "dashboard/offer_review.html",
                {
                    "work": work,
                    "form": form,
                    "current": current,
                    "plain": plain_words.describe(terms),
                    "rsl": document.decode(),
                },
            )
        try:
            offer = catalog_services.offer_publish(work=work, user=user, terms=terms)
        except ApiError as exc:
            forms.attach_problem(form, exc, OFFER_FIELDS)
        else:
            messages.success(request, f"Terms version {offer.version} are published.")
            return redirect(reverse("dashboard:work", args=[work.pk]) + "#offers")
    return render(
        request,
        "dashboard/offer_new.html",
        {"work": work, "form": form, "current": current},
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_POST
def offer_preview(request: HttpRequest, work_id: int) -> HttpResponse:
    """The RSL document and the plain-words summary the form would publish, for the live preview."""
    work = catalog.work_get_managed(user=current_user(request), work_id=work_id)
    form = forms.OfferTermsForm(request.POST)
    if not form.is_valid():
        problems = [
            (str(form.fields[name].label or name) if name in form.fields else "", error)
            for name, errors in form.errors.items()
            for error in errors
        ]
        return render(request, "dashboard/_offer_preview.html", {"invalid": True, "problems": problems})
    terms = form.terms()
    document = rsl.render([_PreviewOffer(work, terms)], site_url=settings.SITE_URL)  # type: ignore[list-item]
    return render(
        request,
        "dashboard/_offer_preview.html",
        {"form": form, "rsl": document.decode(), "plain": plain_words.describe(terms)},
    )


@require_GET
def browse(request: HttpRequest) -> HttpResponse:
    """The public catalogue: anyone may look; accepting a licence needs an account."""
    query = request.GET.get("q", "").strip()
    kind = request.GET.get("kind", "")
    use = request.GET.get("use", "")
    offers = catalog.offers_public().order_by("-created_at", "-id")
    if query:
        offers = offers.filter(
            Q(work__title__icontains=query)
            | Q(work__description__icontains=query)
            | Q(work__created_by__display_name__icontains=query)
        )
    if kind in WorkKind.values:
        offers = offers.filter(work__kind=kind)
    if use in UseClass.values:
        offers = offers.filter(uses__use_class=use)
    page = paginate(request, offers.distinct(), size=12)
    cards = [
        {
            "offer": offer,
            "preview": dashboard.preview_asset_of(work=offer.work),
            "plain": [
                line
                for line in plain_words.describe(plain_words.terms_of(offer))
                if not line.startswith("You may not")
            ][:3],
        }
        for offer in page
    ]
    return render(
        request,
        "dashboard/browse.html",
        {
            "page": page,
            "cards": cards,
            "q": query,
            "kind": kind,
            "use": use,
            "kinds": WorkKind.choices,
            "uses": UseClass.choices,
            # Released works made by fans are on sale to everyone: listed beside the licensable works.
            "releases": selectors_public.releases_matching(
                query=query, kind=kind if kind in WorkKind.values else ""
            )[:12]
            if not use
            else [],
        },
    )


def _readable_offer(request: HttpRequest, offer_id: int) -> Offer:
    user = request.user if isinstance(request.user, User) else None
    try:
        return catalog.offer_get_readable(user=user, offer_id=offer_id)
    except Offer.DoesNotExist:
        raise Http404 from None


@require_GET
def offer_detail(request: HttpRequest, offer_id: int) -> HttpResponse:
    offer = _readable_offer(request, offer_id)
    user = request.user if isinstance(request.user, User) else None
    grant = (
        dashboard.grants_held_by(user=user).filter(offer__work=offer.work).order_by("-created_at").first()
        if user
        else None
    )
    return render(
        request,
        "dashboard/offer_detail.html",
        {
            "offer": offer,
            "plain": plain_words.describe(plain_words.terms_of(offer)),
            "assets": catalog.assets_of(work=offer.work)[:6],
            "grant": grant,
            "own_work": user is not None and offer.work.created_by_id == user.pk,
            "allows_derivative": any(u.use_class == UseClass.DERIVATIVE for u in offer.uses.all()),
        },
    )


@login_required
@require_POST
def offer_accept(request: HttpRequest, offer_id: int) -> HttpResponse:
    offer = _readable_offer(request, offer_id)
    try:
        acceptance = licences.licence_accept(offer=offer, user=current_user(request))
    except ApiError as exc:
        messages.error(request, str(exc.detail))
        return redirect("dashboard:offer", offer_id=offer.pk)
    grant = acceptance.grant
    if grant.status == GrantStatus.PENDING_APPROVAL:
        messages.info(request, "Your licence request is waiting for the creator's approval.")
    elif acceptance.fee_charged_minor:
        fee = format_minor(acceptance.fee_charged_minor, grant.currency)
        messages.success(request, f"You hold a licence for “{offer.work.title}”; its fee of {fee} is paid.")
    elif acceptance.created:
        messages.success(request, f"You hold a licence for “{offer.work.title}”.")
    else:
        messages.info(request, "You already hold this licence.")
    return redirect("dashboard:offer", offer_id=offer.pk)


# Grants ------------------------------------------------------------------------------------------------


@login_required
@require_GET
def grants(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    return render(
        request,
        "dashboard/grants.html",
        {
            "held": paginate(request, dashboard.grants_held_by(user=user)),
            "received": dashboard.grants_on_works_of(user=user).order_by("status", "-created_at")[:50]
            if user.role == Role.CREATOR
            else None,
        },
    )


@login_required
@require_POST
def grant_decide(request: HttpRequest, grant_id: int, approve: bool) -> HttpResponse:
    user = current_user(request)
    grant = catalog.grant_get_visible(user=user, grant_id=grant_id)
    try:
        grant = catalog_services.grant_decide(grant=grant, user=user, approve=approve)
    except ApiError as exc:
        messages.error(request, str(exc.detail))
    else:
        messages.success(request, f"Licence {'approved' if approve else 'rejected'}.")
    return redirect(request.POST.get("next") or reverse("dashboard:grants"))
