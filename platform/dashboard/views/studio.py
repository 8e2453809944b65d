"""The studio's pages ("Create"): choose an offer, read its terms in plain words, accept them, upload the
inputs, start a job, follow its progress (htmx polling), preview, download and release the result, and
buy other people's releases. Thin: reads through selectors, writes through the studio's services."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.uploadedfile import UploadedFile
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.models import Role, User
from catalog import selectors as catalog
from catalog.models import Grant, GrantStatus, Offer
from common.money import Money
from common.problems import ApiError
from dashboard import generator_words, plain_words
from dashboard.web import current_user
from studio import generators, selectors, services
from studio.models import ApprovalStatus, Release, ReleaseStatus

PAGE_SIZE = 10


def _maker_only(request: HttpRequest) -> HttpResponse | None:
    if current_user(request).role in (Role.FAN, Role.CREATOR):
        return None
    return render(
        request, "dashboard/not_for_role.html", {"what": "The studio", "role": Role.FAN.label}, status=403
    )


@login_required
@require_GET
def create(request: HttpRequest) -> HttpResponse:
    refused = _maker_only(request)
    if refused:
        return refused
    user = current_user(request)
    offers = Paginator(selectors.offers_for_derivatives().exclude(work__created_by=user), PAGE_SIZE)
    jobs = Paginator(selectors.jobs_of(user=user), PAGE_SIZE)
    return render(
        request,
        "dashboard/studio/create.html",
        {
            "offers": offers.get_page(request.GET.get("offers")),
            "jobs": jobs.get_page(request.GET.get("jobs")),
            "wallet": selectors.wallet_of(user=user),
            "available_minor": selectors.wallet_available(user=user, currency=settings.DEFAULT_CURRENCY),
            "currency": settings.DEFAULT_CURRENCY,
            "top_up": settings.DEBUG and settings.STUDIO_DEV_TOP_UP and user.is_staff,
            "releases": selectors.releases_visible_to(user=user)
            .exclude(released_by=user)
            .filter(status=ReleaseStatus.ON_SALE)[:PAGE_SIZE],
            "approvals": selectors.approvals_of(user=user, pending_only=True)[:PAGE_SIZE],
            "mine": selectors.releases_visible_to(user=user).filter(released_by=user)[:PAGE_SIZE],
        },
    )


@login_required
@require_POST
def wallet_top_up(request: HttpRequest) -> HttpResponse:
    if not (settings.DEBUG and settings.STUDIO_DEV_TOP_UP and current_user(request).is_staff):
        raise Http404
    try:
        amount = _minor_units(request.POST.get("amount", ""), settings.DEFAULT_CURRENCY)
        services.wallet_fund(
            user=current_user(request),
            amount=Money(amount, settings.DEFAULT_CURRENCY),
            external_ref=f"dev-{uuid.uuid4()}",
            rail="development",
        )
    except (ValueError, ApiError) as exc:
        messages.error(request, str(getattr(exc, "detail", exc)))
    else:
        messages.success(
            request,
            f"Your wallet was credited with {plain_words.money(amount, settings.DEFAULT_CURRENCY)} "
            "(development top-up).",
        )
    return redirect("dashboard:create")


def _minor_units(text: str, currency: str) -> int:
    """'12.50' -> 1250 for USD: an amount as people write it, exact (Decimal), refused when malformed."""
    try:
        amount = Decimal(text.strip().replace(",", "")).scaleb(plain_words.minor_digits(currency))
    except ArithmeticError:
        raise ValueError("Enter an amount like 25.00.") from None
    if not amount.is_finite() or amount != amount.to_integral_value() or amount <= 0:
        raise ValueError("Enter a positive amount like 25.00.")
    return int(amount)


def _offer(request: HttpRequest, offer_id: int) -> Offer:
    try:
        return catalog.offer_get_readable(user=current_user(request), offer_id=offer_id)
    except Offer.DoesNotExist:
        raise Http404 from None


def _grant_of(user: User, offer: Offer) -> Grant | None:
    return (
        Grant.objects.filter(
            licensee=user, offer=offer, status__in=[GrantStatus.ACTIVE, GrantStatus.PENDING_APPROVAL]
        )
        .order_by("-created_at")
        .first()
    )


@login_required
@require_GET
def create_from(request: HttpRequest, offer_id: int) -> HttpResponse:
    refused = _maker_only(request)
    if refused:
        return refused
    user = current_user(request)
    offer = _offer(request, offer_id)
    choices: list[dict[str, Any]] = []
    for generator in generators.available().values():
        missing = services.generator_refusal(generator=generator, offer=offer)
        choices.append(
            {
                "generator": generator,
                "missing": missing,
                "applicable": services.generator_applicable(generator=generator, offer=offer),
                "price_minor": services.job_price_minor(generator=generator, offer=offer),
            }
        )
    return render(
        request,
        "dashboard/studio/offer.html",
        {
            "offer": offer,
            "plain": plain_words.describe(plain_words.terms_of(offer)),
            "grant": _grant_of(user, offer),
            "choices": choices,
            "available_minor": selectors.wallet_available(user=user, currency=offer.currency),
            "own_work": offer.work.created_by_id == user.pk,
        },
    )


@login_required
@require_POST
def accept(request: HttpRequest, offer_id: int) -> HttpResponse:
    offer = _offer(request, offer_id)
    try:
        acceptance = services.terms_accept(user=current_user(request), offer=offer)
    except ApiError as exc:
        messages.error(request, str(exc.detail))
    else:
        if acceptance.grant.status == GrantStatus.PENDING_APPROVAL:
            messages.info(request, "Your licence waits for the creator's approval.")
        else:
            messages.success(request, "You hold the licence; choose a generator below.")
    return redirect("dashboard:create-from", offer_id=offer.pk)


@login_required
@require_POST
def start(request: HttpRequest, offer_id: int) -> HttpResponse:
    user = current_user(request)
    offer = _offer(request, offer_id)
    grant = _grant_of(user, offer)
    if grant is None:
        messages.error(request, "Accept the terms first.")
        return redirect("dashboard:create-from", offer_id=offer.pk)
    name = request.POST.get("generator", "")
    generator = generators.get(name)
    inputs: dict[str, services.InputFile | str] = {}
    if generator is not None:
        for spec in generator.inputs:
            if spec.kind == "text":
                inputs[spec.name] = request.POST.get(spec.name, "")
            elif isinstance(upload := request.FILES.get(spec.name), UploadedFile):
                inputs[spec.name] = services.InputFile(filename=upload.name or spec.name, data=upload.read())
    declared = request.POST.get("explicit", "")
    try:
        job = services.job_create(
            user=user,
            grant_id=grant.pk,
            generator_name=name,
            inputs=inputs,
            title=request.POST.get("title", ""),
            explicit={"true": True, "false": False}.get(declared),
        )
    except ApiError as exc:
        messages.error(request, str(exc.detail))
        return redirect("dashboard:create-from", offer_id=offer.pk)
    messages.success(request, "Started. This page follows the job until it is done.")
    return redirect("dashboard:create-job", job_id=job.pk)


def _job(request: HttpRequest, job_id: int) -> Any:
    try:
        return selectors.job_get_visible(user=current_user(request), job_id=job_id)
    except ApiError:
        raise Http404 from None


@login_required
@require_GET
def job(request: HttpRequest, job_id: int) -> HttpResponse:
    found = _job(request, job_id)
    release = selectors.release_of_work(work_id=found.result_work_id) if found.result_work_id else None
    digits = plain_words.minor_digits(found.currency)
    price = Decimal(release.price_minor if release else 499).scaleb(-digits)
    generator = generators.get(found.generator)
    return render(
        request,
        "dashboard/studio/job.html",
        {
            "job": found,
            "release": release,
            "price_text": f"{price:f}",
            "details": generator_words.describe(found.details),
            "generator_title": generator.title if generator is not None else found.generator,
        },
    )


@login_required
@require_GET
def job_status(request: HttpRequest, job_id: int) -> HttpResponse:
    found = _job(request, job_id)
    response = render(request, "dashboard/studio/_job_status.html", {"job": found})
    if found.finished and request.headers.get("HX-Request"):
        response["HX-Refresh"] = "true"  # the finished page shows the preview and the release form
    return response


@login_required
@require_POST
def release(request: HttpRequest, job_id: int) -> HttpResponse:
    found = _job(request, job_id)
    if found.result_work is None:
        raise Http404
    try:
        amount = Decimal(request.POST.get("price", "0").strip()).scaleb(
            plain_words.minor_digits(found.currency)
        )
        if amount != amount.to_integral_value():
            raise ValueError("more decimals than the currency has")
        price = int(amount)
        services.release_set(
            user=current_user(request), work=found.result_work, price_minor=price, currency=found.currency
        )
    except (ValueError, ArithmeticError):
        messages.error(request, "The price must be an amount like 4.99.")
    except ApiError as exc:
        messages.error(request, str(exc.detail))
    else:
        release = selectors.release_of_work(work_id=found.result_work.pk)
        if release is not None and release.status == ReleaseStatus.PENDING_APPROVAL:
            messages.info(request, "Released: it goes on sale once the voice's owner approves it.")
        else:
            messages.success(request, "Released: it is on sale to everyone on Tribute.")
    return redirect("dashboard:create-job", job_id=found.pk)


def _release(request: HttpRequest, release_id: int) -> Release:
    try:
        return selectors.release_get_visible(user=current_user(request), release_id=release_id)
    except ApiError:
        raise Http404 from None


@login_required
@require_GET
def release_detail(request: HttpRequest, release_id: int) -> HttpResponse:
    user = current_user(request)
    found = _release(request, release_id)
    return render(
        request,
        "dashboard/studio/release.html",
        {
            "release": found,
            "may_download": selectors.may_download(user=user, release=found),
            "own": found.released_by_id == user.pk,
            "asset": selectors.release_file(release=found),
            "available_minor": selectors.wallet_available(user=user, currency=found.currency),
            "approvals": list(found.approvals.all()),
            "my_pending_approval": found.approvals.filter(owner=user, status=ApprovalStatus.PENDING).exists(),
            "sales": selectors.release_sales_count(release=found)
            if found.released_by_id == user.pk
            else None,
            "share_url": request.build_absolute_uri(reverse("release-public", args=[found.pk])),
        },
    )


@login_required
@require_POST
def release_decide(request: HttpRequest, release_id: int, approve: bool) -> HttpResponse:
    """The voice's (or other parent's) owner approves or refuses a release made from their work."""
    found = _release(request, release_id)
    try:
        services.release_decide(
            user=current_user(request), release=found, approve=approve, reason=request.POST.get("reason", "")
        )
    except ApiError as exc:
        messages.error(request, str(exc.detail))
    else:
        messages.success(
            request, "Approved: it is on sale." if approve else "Refused; the maker is told why."
        )
    return redirect("dashboard:create-release", release_id=found.pk)


@login_required
@require_POST
def release_buy(request: HttpRequest, release_id: int) -> HttpResponse:
    found = _release(request, release_id)
    shown = request.POST.get("price_minor", "")
    try:
        services.release_purchase(
            buyer=current_user(request),
            release=found,
            expected_price_minor=int(shown) if shown.isdigit() and len(shown) < 19 else None,
        )
    except ApiError as exc:
        messages.error(request, str(exc.detail))
    else:
        messages.success(request, "Bought: download it below.")
    return redirect("dashboard:create-release", release_id=found.pk)
