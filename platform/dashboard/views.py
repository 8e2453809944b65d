"""The web dashboard. Views are thin: check who may see the page, read through selectors, write through
the catalog's and accounts' services, and show a service's refusal next to the form it concerns."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from access import content as access_content
from access import payments
from accounts import ratelimits
from accounts import selectors as account_selectors
from accounts import services as account_services
from accounts.models import ApiKey, Role, User
from accounts.views import strong_session_redirect
from catalog import rsl, tracing
from catalog import selectors as catalog
from catalog import services as catalog_services
from catalog.models import (
    TEXT_KINDS,
    Claim,
    ClaimStatus,
    GrantStatus,
    Offer,
    OfferStatus,
    UseClass,
    Work,
    WorkKind,
    WorkStatus,
)
from common import clock
from common.currency import format_minor
from common.problems import ApiError
from contracts.chain import ChainError, TokenDomain
from dashboard import forms, lineage_graph, plain_words
from dashboard import selectors as dashboard
from media import services as media_services
from royalties import claims as claim_money
from royalties import licences
from royalties import selectors as royalty_selectors
from royalties import services as royalty_services
from royalties.models import RevenueSource

PAGE_SIZE = 10
TEXT_MATCH_KINDS = (media_services.TextMatchKind.QUOTE, media_services.TextMatchKind.PARAPHRASE)
# Which form field a service's error code belongs to.
OFFER_FIELDS = {
    "invalid_territory": "territories",
    "invalid_expiry": "expires_on",
    "invalid_quota": "quota",
    "invalid_share": "derivative_share",
    "no_uses": "allow_ai_train",
}
DERIVATIVE_FIELDS = {
    "royalty_stack_over_100": "grants",
    "grant_not_found": "grants",
    "grant_not_active": "grants",
    "derivative_not_allowed": "grants",
    "offer_expired": "grants",
    "invalid_kind": "kind",
    "invalid_tags": "tags",
}
UPLOAD_FIELDS = {
    "wrong_media_kind": "file",
    "unsupported_media": "file",
    "media_too_large": "file",
    "corrupt_media": "file",
    "invalid_encoding": "file",
    "active_content": "file",
}


def _user(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User):  # login_required let an anonymous user through: a wiring mistake
        raise Http404
    return user


def _page(
    request: HttpRequest, items: QuerySet[Any] | list[Any], size: int = PAGE_SIZE, param: str = "page"
) -> Page:
    return Paginator(items, size).get_page(request.GET.get(param))


def _role_only(request: HttpRequest, role: str, what: str) -> HttpResponse | None:
    """A page for one role answers the others with a plain explanation (403), never with data."""
    if _user(request).role == role:
        return None
    return render(
        request, "dashboard/not_for_role.html", {"what": what, "role": Role(role).label}, status=403
    )


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Operator pages do not exist for anyone else."""

    @login_required
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not _user(request).is_staff:
            raise Http404
        return view(request, *args, **kwargs)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


# Home --------------------------------------------------------------------------------------------------


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    works = catalog.works_visible_to(user=user)
    context: dict[str, Any] = {"recent_works": works[:5]}
    if user.role == Role.CREATOR:
        context.update(
            stats={
                "works": works.count(),
                "published": works.filter(status="published").count(),
                "grants": dashboard.grants_on_works_of(user=user).filter(status=GrantStatus.ACTIVE).count(),
                "claims": dashboard.claim_open_count(user=user),
            },
            pending_grants=dashboard.grants_on_works_of(user=user).filter(
                status=GrantStatus.PENDING_APPROVAL
            )[:5],
            activity=dashboard.weekly_activity(user=user),
        )
    elif user.role == Role.FAN:
        context.update(
            grants=dashboard.grants_held_by(user=user)[:5],
            derivatives=catalog.derivatives_visible_to(user=user)[:5],
        )
    else:
        context.update(
            keys=account_selectors.api_keys_visible_to(user=user).filter(revoked_at__isnull=True)[:5],
            organisations=account_selectors.organisations_of(user=user),
        )
    return render(request, "dashboard/home.html", context)


# Works -------------------------------------------------------------------------------------------------


@login_required
@require_GET
def works(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    kind = request.GET.get("kind", "")
    status = request.GET.get("status", "")
    items = catalog.works_visible_to(user=_user(request)).prefetch_related("assets__blob")
    if query:
        items = items.filter(Q(title__icontains=query) | Q(description__icontains=query))
    if kind in WorkKind.values:
        items = items.filter(kind=kind)
    if status in WorkStatus.values:
        items = items.filter(status=status)
    return render(
        request,
        "dashboard/works.html",
        {
            "page": _page(request, items),
            "q": query,
            "kind": kind,
            "status": status,
            "kinds": WorkKind.choices,
            "statuses": WorkStatus.choices,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def work_new(request: HttpRequest) -> HttpResponse:
    refused = _role_only(request, Role.CREATOR, "Registering original works")
    if refused:
        return refused
    form = forms.WorkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            work = catalog_services.work_create(user=_user(request), **form.cleaned_data)
        except ApiError as exc:
            forms.attach_problem(form, exc, {"invalid_kind": "kind", "invalid_tags": "tags"})
        else:
            messages.success(request, f"“{work.title}” is registered. Add its files next.")
            return redirect("dashboard:work", work_id=work.pk)
    return render(request, "dashboard/work_new.html", {"form": form})


@login_required
@require_GET
def work_detail(request: HttpRequest, work_id: int) -> HttpResponse:
    user = _user(request)
    work = catalog.work_get_visible(user=user, work_id=work_id)
    manages = work.created_by_id == user.pk
    lineage = catalog.lineage_of(work=work)
    offers = catalog.offers_of(work=work)
    current = next((offer for offer in offers if offer.status == OfferStatus.CURRENT), None)
    is_text = work.kind in TEXT_KINDS
    return render(
        request,
        "dashboard/work_detail.html",
        {
            "work": work,
            "is_text": is_text,
            "text": dashboard.text_summary_of(work=work) if is_text else None,
            "manages": manages,
            # Only creators publish terms (a fan's derivative earns through its parents' terms).
            "can_offer": manages and user.role == Role.CREATOR,
            "assets": catalog.assets_of(work=work),
            "upload_form": forms.TextUploadForm() if is_text else forms.UploadForm(),
            "sheets": catalog.split_sheets_of(work=work)[:5],
            "offers": offers[:5],
            "current_offer": current,
            "current_terms": plain_words.describe(plain_words.terms_of(current)) if current else [],
            "grants": dashboard.grants_on_work(work=work)[:20] if manages else [],
            "lineage": lineage,
            "graph": lineage_graph.layout(lineage) if lineage["ancestors"] else None,
            "derivatives": dashboard.derivative_links_of(work=work)[:20],
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def work_edit(request: HttpRequest, work_id: int) -> HttpResponse:
    """The work's title, description and tags; only its manager may change them (404 for anyone else)."""
    work = catalog.work_get_managed(user=_user(request), work_id=work_id)
    initial = {"title": work.title, "description": work.description, "tags": ", ".join(work.tags)}
    form = forms.WorkEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            work = catalog_services.work_update(work=work, **form.cleaned_data)
        except ApiError as exc:
            forms.attach_problem(form, exc, {"invalid_tags": "tags"})
        else:
            messages.success(request, f"“{work.title}” is saved.")
            return redirect("dashboard:work", work_id=work.pk)
    return render(
        request,
        "dashboard/work_edit.html",
        {"work": work, "form": form},
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_POST
def asset_upload(request: HttpRequest, work_id: int) -> HttpResponse:
    """A multipart upload. The page sends it with XHR (to show the bytes going up) and receives the new
    asset's row, which then follows the fingerprinting job; without script it redirects back."""
    user = _user(request)
    work = catalog.work_get_managed(user=user, work_id=work_id)
    is_text = work.kind in TEXT_KINDS
    form = (forms.TextUploadForm if is_text else forms.UploadForm)(request.POST, request.FILES)
    limit = forms.text_upload_limit_bytes() if is_text else settings.UPLOAD_MAX_BYTES
    xhr = request.headers.get("X-Requested-With") == "XMLHttpRequest"
    asset = None
    refused_status = 422
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            if upload.size > limit:
                raise ApiError(
                    f"The file is {upload.size:,} bytes; the limit is {limit:,} bytes.",
                    code="media_too_large",
                )
            ratelimits.quota_consume_or_refuse(request, scope="uploads", user=user)
            result = catalog_services.asset_upload(
                work=work, user=user, data=upload.read(), filename=upload.name or ""
            )
            asset = result.asset
        except ApiError as exc:
            refused_status = 429 if exc.status_code == 429 else 422
            forms.attach_problem(form, exc, UPLOAD_FIELDS)
    if xhr:
        if asset is None:
            return render(request, "dashboard/_upload_errors.html", {"form": form}, status=refused_status)
        return render(request, "dashboard/_asset.html", {"asset": asset, "manages": True}, status=201)
    if asset is None:
        for error in [*form.errors.get("file", []), *form.non_field_errors()]:
            messages.error(request, str(error))
    elif is_text:
        version = getattr(asset, "text_version", None)
        messages.success(
            request,
            f"{asset.filename} is version {version.version} of the text; fingerprinting has started."
            if version is not None
            else f"{asset.filename} was uploaded before: the text is unchanged.",
        )
    else:
        messages.success(request, f"{asset.filename} uploaded; fingerprinting has started.")
    return redirect(reverse("dashboard:work", args=[work.pk]) + ("#versions" if is_text else "#assets"))


@login_required
@require_GET
def asset_status(request: HttpRequest, asset_id: int) -> HttpResponse:
    asset = catalog.asset_get_visible(user=_user(request), asset_id=asset_id)
    return render(request, "dashboard/_asset_status.html", {"asset": asset})


@require_GET
def asset_file(request: HttpRequest, asset_id: int) -> FileResponse:
    """An asset as the dashboard shows it: the original to its owners, co-owners and grant holders (the
    access service decides), the preview to everyone else who may see it (the same 404 rules as pages)."""
    user = request.user if isinstance(request.user, User) else None
    asset = dashboard.asset_get_viewable(user=user, asset_id=asset_id)
    if access_content.session_entitlement(user=user, work=asset.work) is not None:
        handle = access_content.open_original(access_content.stored_file_of(asset))
        media_type = asset.blob.media_type
    else:
        name, media_type = access_content.preview_of(asset.blob)
        handle = access_content.open_preview(name)
    response = FileResponse(handle, content_type=media_type)
    response["Content-Disposition"] = "inline"
    response["Cache-Control"] = "private, max-age=3600"
    response["Vary"] = "Cookie"
    return response


# Split sheets ------------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def split_edit(request: HttpRequest, work_id: int) -> HttpResponse:
    user = _user(request)
    work = catalog.work_get_managed(user=user, work_id=work_id)
    active = catalog.split_sheet_active(work=work)
    initial = (
        [{"email": share.email, "percent": Decimal(share.share_bps) / 100} for share in active.shares.all()]
        if active
        else [{"email": user.email, "percent": "100"}]
    )
    formset = cast(
        forms.BaseSplitFormSet, forms.SplitFormSet(request.POST or None, initial=initial, prefix="shares")
    )
    if request.method == "POST" and formset.is_valid():
        try:
            with transaction.atomic():  # over the quota, the proposal rolls back and mails nobody
                sheet = catalog_services.split_sheet_propose(work=work, user=user, shares=formset.shares())
                ratelimits.invitations_quota(request, user=user, shares=formset.shares())
        except ApiError as exc:
            formset.add_problem(str(exc.detail))
        else:
            if sheet.status == "active":
                messages.success(request, f"Split sheet version {sheet.version} is active.")
            else:
                messages.success(
                    request,
                    f"Split sheet version {sheet.version} is waiting for the co-owners: "
                    "each received an invitation by email.",
                )
            return redirect(reverse("dashboard:work", args=[work.pk]) + "#owners")
    return render(
        request,
        "dashboard/split_edit.html",
        {"work": work, "formset": formset, "sheets": catalog.split_sheets_of(work=work)},
    )


@login_required
@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest) -> HttpResponse:
    form = forms.InvitationForm(request.POST or None, initial={"token": request.GET.get("token", "")})
    if request.method == "POST" and form.is_valid():
        try:
            sheet = catalog_services.split_share_accept(token=form.cleaned_data["token"], user=_user(request))
        except ApiError as exc:
            forms.attach_problem(form, exc, {"invitation_not_found": "token", "split_sheet_closed": "token"})
        else:
            messages.success(request, f"You are now listed as a co-owner of “{sheet.work.title}”.")
            return redirect("dashboard:work", work_id=sheet.work_id)
    return render(request, "dashboard/invitation_accept.html", {"form": form})


# Offers ------------------------------------------------------------------------------------------------


def _offer_initial(offer: Offer | None) -> dict[str, Any]:
    if offer is None:
        return {"allow_ai_train": True, "price_ai_train": "0.05", "allow_derivative": True}
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
    user = _user(request)
    work = catalog.work_get_managed(user=user, work_id=work_id)
    current = catalog.offers_of(work=work).filter(status=OfferStatus.CURRENT).first()
    form = forms.OfferTermsForm(request.POST or None, initial=_offer_initial(current))
    if request.method == "POST" and form.is_valid():
        try:
            offer = catalog_services.offer_publish(work=work, user=user, terms=form.terms())
        except ApiError as exc:
            forms.attach_problem(form, exc, OFFER_FIELDS)
        else:
            messages.success(request, f"Terms version {offer.version} are published.")
            return redirect(reverse("dashboard:work", args=[work.pk]) + "#offers")
    return render(request, "dashboard/offer_new.html", {"work": work, "form": form, "current": current})


@login_required
@require_POST
def offer_preview(request: HttpRequest, work_id: int) -> HttpResponse:
    """The RSL document and the plain-words summary the form would publish, for the live preview."""
    work = catalog.work_get_managed(user=_user(request), work_id=work_id)
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
    page = _page(request, offers.distinct(), size=12)
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
        acceptance = licences.licence_accept(offer=offer, user=_user(request))
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
    user = _user(request)
    return render(
        request,
        "dashboard/grants.html",
        {
            "held": _page(request, dashboard.grants_held_by(user=user)),
            "received": dashboard.grants_on_works_of(user=user).order_by("status", "-created_at")[:50]
            if user.role == Role.CREATOR
            else None,
        },
    )


@login_required
@require_POST
def grant_decide(request: HttpRequest, grant_id: int, approve: bool) -> HttpResponse:
    user = _user(request)
    grant = catalog.grant_get_visible(user=user, grant_id=grant_id)
    try:
        grant = catalog_services.grant_decide(grant=grant, user=user, approve=approve)
    except ApiError as exc:
        messages.error(request, str(exc.detail))
    else:
        messages.success(request, f"Licence {'approved' if approve else 'rejected'}.")
    return redirect(request.POST.get("next") or reverse("dashboard:grants"))


# Derivatives -------------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def derivative_new(request: HttpRequest) -> HttpResponse:
    user = _user(request)
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


# Claims ------------------------------------------------------------------------------------------------


@login_required
@require_GET
def claims(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    side = request.GET.get("side", "mine")
    visible = catalog.claims_visible_to(user=user)
    items = visible.filter(respondent=user) if side == "against" else visible.filter(work__created_by=user)
    status = request.GET.get("status", "")
    if status in ClaimStatus.values:
        items = items.filter(status=status)
    return render(
        request,
        "dashboard/claims.html",
        {"page": _page(request, items), "side": side, "status": status, "statuses": ClaimStatus.choices},
    )


def _claim_context(request: HttpRequest, claim: Claim, **extra: Any) -> dict[str, Any]:
    user = _user(request)
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
    claim = catalog.claim_get_visible(user=_user(request), claim_id=claim_id)
    return render(request, "dashboard/claim_detail.html", _claim_context(request, claim))


@login_required
@require_POST
def claim_decide(request: HttpRequest, claim_id: int) -> HttpResponse:
    user = _user(request)
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
    user = _user(request)
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
    user = _user(request)
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


# API keys ----------------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def keys(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = forms.ApiKeyForm(request.POST or None)
    issued = None
    if request.method == "POST" and form.is_valid() and "access" in form.cleaned_data["scopes"]:
        weak = strong_session_redirect(request, action="create an access key", back=reverse("dashboard:keys"))
        if weak:
            return weak
    if request.method == "POST" and form.is_valid():
        try:
            issued = account_services.api_key_create(
                user=user,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=form.cleaned_data["expires_on"],
            )
        except ApiError as exc:
            forms.attach_problem(form, exc, {"invalid_scopes": "scopes", "invalid_expiry": "expires_on"})
        else:
            form = forms.ApiKeyForm()
    items = account_selectors.api_keys_visible_to(user=user).select_related("user", "organisation")
    return render(
        request,
        "dashboard/keys.html",
        {"form": form, "issued": issued, "page": _page(request, items)},
        status=201 if issued else 200,
    )


@login_required
@require_POST
def key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    api_key: ApiKey = get_object_or_404(account_selectors.api_keys_visible_to(user=_user(request)), pk=key_id)
    account_services.api_key_revoke(api_key=api_key)
    messages.success(request, f"Key “{api_key.name}” ({api_key.prefix}…) is revoked.")
    return redirect("dashboard:keys")


# Money: earnings and statements ------------------------------------------------------------------------


@login_required
@require_GET
def earnings(request: HttpRequest) -> HttpResponse:
    """Any payee's earnings (creators and fans earn; a vendor sees an empty page), only ever their own."""
    user = _user(request)
    summary = royalty_selectors.earnings_of(user=user)
    currencies = [row["currency"] for row in summary["balances"]]
    chosen = request.GET.get("currency", "")
    currency = chosen if chosen in currencies else (currencies[0] if currencies else "")
    statements = _page(request, royalty_selectors.statements_of(user=user).select_related("user", "previous"))
    return render(
        request,
        "dashboard/earnings.html",
        {
            "balances": summary["balances"],
            "by_work": _page(request, summary["by_work"], param="work_page"),
            "currencies": currencies,
            "currency": currency,
            "chart": dashboard.earnings_by_day(user=user, currency=currency) if currency else None,
            "statements": statements,
            "checks": {
                statement.pk: royalty_services.statement_verify(statement=statement)
                for statement in statements
            },
            "sources": dict(RevenueSource.choices),
        },
    )


@login_required
@require_POST
def statement_new(request: HttpRequest) -> HttpResponse:
    """The user's next statement in one of the currencies they hold a payable balance in, up to now."""
    user = _user(request)
    currencies = [row["currency"] for row in royalty_selectors.earnings_of(user=user)["balances"]]
    currency = request.POST.get("currency", "")
    if currency not in currencies:
        messages.error(request, "Choose a currency you have earned in.")
        return redirect("dashboard:earnings")
    try:
        statement = royalty_services.statement_generate(user=user, currency=currency, period_end=clock.now())
    except ApiError as exc:
        messages.error(request, str(exc.detail))
    else:
        messages.success(request, f"Statement #{statement.pk} ({statement.currency}) is issued.")
    return redirect(reverse("dashboard:earnings") + "#statements")


@login_required
@require_GET
def statement_csv(request: HttpRequest, statement_id: int) -> HttpResponse:
    statement = royalty_selectors.statement_get_visible(user=_user(request), statement_id=statement_id)
    response = HttpResponse(royalty_services.statement_csv(statement=statement), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="statement-{statement.pk}.csv"'
    return response


# Money: what a vendor spends ---------------------------------------------------------------------------

USAGE_DAYS = 90
OUTPUT_RESULT_PARTS = ("confirmed_works", "unconfirmed_works", "uncovered_works")


def _token_domain() -> TokenDomain | None:
    try:
        return payments.chain().token_domain()
    except ChainError:
        return None


@login_required
@require_GET
def balance(request: HttpRequest) -> HttpResponse:
    refused = _role_only(request, Role.VENDOR, "The prepaid balance")
    if refused:
        return refused
    user = _user(request)
    return render(
        request,
        "dashboard/balance.html",
        {
            "balances": dashboard.prepaid_balances_of(user=user),
            "organisations": dashboard.organisations_of(user=user),
            "caps": _page(request, dashboard.spend_caps_of(user=user)),
            "month": clock.now().strftime("%Y-%m"),
            "token": _token_domain(),
        },
    )


@login_required
@require_GET
def usage(request: HttpRequest) -> HttpResponse:
    refused = _role_only(request, Role.VENDOR, "Usage and spend")
    if refused:
        return refused
    since = timezone.localdate() - timedelta(days=USAGE_DAYS - 1)
    chart, table = dashboard.usage_of(user=_user(request), since=since)
    return render(
        request,
        "dashboard/usage.html",
        {"chart": chart, "page": _page(request, table), "since": since, "days": USAGE_DAYS},
    )


@login_required
@require_GET
def receipts(request: HttpRequest) -> HttpResponse:
    refused = _role_only(request, Role.VENDOR, "The receipts list")
    if refused:
        return refused
    page = _page(request, dashboard.accesses_of_organisations(user=_user(request)))
    rows = [(event, dashboard.receipt_of(event)) for event in page]
    return render(request, "dashboard/receipts.html", {"page": page, "rows": rows})


@login_required
@require_GET
def outputs(request: HttpRequest) -> HttpResponse:
    refused = _role_only(request, Role.VENDOR, "The registered outputs list")
    if refused:
        return refused
    page = _page(request, dashboard.outputs_of(user=_user(request)))
    named: set[int] = set()
    for output in page:
        for part in OUTPUT_RESULT_PARTS:
            named.update(int(work_id) for work_id in output.result.get(part, []))
    titles = dashboard.work_titles(named)

    def works(ids: list[int]) -> list[tuple[int, str]]:
        return [(int(work_id), titles.get(int(work_id), "")) for work_id in ids]

    rows = [
        {
            "output": output,
            "confirmed": works(output.result.get("confirmed_works", [])),
            "unconfirmed": works(output.result.get("unconfirmed_works", [])),
            "uncovered": works(output.result.get("uncovered_works", [])),
            "claims": output.visible_claims,
        }
        for output in page
    ]
    return render(request, "dashboard/outputs.html", {"page": page, "rows": rows})


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
                    operator=_user(request),
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
    page = _page(request, items)
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
