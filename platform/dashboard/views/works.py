"""Works: the list, a work's page, new works, edits, uploads, split sheets and invitations."""

from __future__ import annotations

from decimal import Decimal
from typing import cast
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.db.models import Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from access import content as access_content
from accounts import ratelimits
from accounts.models import Role, User
from catalog import selectors as catalog
from catalog import services as catalog_services
from catalog.models import (
    TEXT_KINDS,
    OfferStatus,
    WorkKind,
    WorkStatus,
)
from common.problems import ApiError
from dashboard import forms, lineage_graph, plain_words, selectors_public
from dashboard import selectors as dashboard
from dashboard import selectors_collections as collections
from dashboard.web import current_user, paginate, role_only

UPLOAD_FIELDS = {
    "wrong_media_kind": "file",
    "unsupported_media": "file",
    "media_too_large": "file",
    "corrupt_media": "file",
    "invalid_encoding": "file",
    "active_content": "file",
}


# Works -------------------------------------------------------------------------------------------------


@login_required
@require_GET
def works(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    kind = request.GET.get("kind", "")
    status = request.GET.get("status", "")
    items = catalog.works_visible_to(user=current_user(request)).prefetch_related(
        "assets__blob", "members__assets__blob"
    )
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
            "page": paginate(request, items),
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
    refused = role_only(request, Role.CREATOR, "Registering original works")
    if refused:
        return refused
    form = forms.WorkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            work = catalog_services.work_create(user=current_user(request), **form.cleaned_data)
        except ApiError as exc:
            forms.attach_problem(form, exc, {"invalid_kind": "kind", "invalid_tags": "tags"})
        else:
            messages.success(request, f"“{work.title}” is registered. Add its files next.")
            return redirect("dashboard:work", work_id=work.pk)
    return render(request, "dashboard/work_new.html", {"form": form})


@login_required
@require_GET
def work_detail(request: HttpRequest, work_id: int) -> HttpResponse:
    user = current_user(request)
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
            "release": selectors_public.on_sale_release_of(work=work),
            "is_collection": collections.is_collection(work),
            "members": collections.members_of(collection=work, viewer=user)
            if collections.is_collection(work)
            else [],
            "member_choices": collections.member_candidates(collection=work)
            if manages and collections.is_collection(work)
            else [],
            "is_public": current is not None or selectors_public.on_sale_release_of(work=work) is not None,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def work_edit(request: HttpRequest, work_id: int) -> HttpResponse:
    """The work's title, description and tags; only its manager may change them (404 for anyone else)."""
    work = catalog.work_get_managed(user=current_user(request), work_id=work_id)
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
    user = current_user(request)
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
    asset = catalog.asset_get_visible(user=current_user(request), asset_id=asset_id)
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
    user = current_user(request)
    work = catalog.work_get_managed(user=user, work_id=work_id)
    active = catalog.split_sheet_active(work=work)
    initial = (
        [
            {
                "name": share.name,
                "role": share.role,
                "email": share.email,
                "percent": Decimal(share.share_bps) / 100,
            }
            for share in active.shares.all()
        ]
        if active
        else [{"name": user.public_name, "email": user.email, "percent": "100"}]
    )
    formset = cast(
        forms.BaseSplitFormSet, forms.SplitFormSet(request.POST or None, initial=initial, prefix="shares")
    )
    if request.method == "POST" and formset.is_valid():
        try:
            with transaction.atomic():  # over the quota, the proposal rolls back and mails nobody
                sheet = catalog_services.split_sheet_propose(
                    work=work, user=user, shares=formset.shares(), details=formset.details()
                )
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
        {
            "work": work,
            "formset": formset,
            "sheets": catalog.split_sheets_of(work=work),
            "invitations": catalog.invitations_open_on(work=work),
            "roles": SPLIT_ROLES,
        },
        status=400 if request.method == "POST" else 200,
    )


# Suggested roles for a split row (the field takes any text).
SPLIT_ROLES = ("Songwriter", "Composer", "Producer", "Performer", "Photographer", "Illustrator", "Editor")


@login_required
@require_POST
def invitation_resend(request: HttpRequest, work_id: int, share_id: int) -> HttpResponse:
    """The work's manager mails a waiting co-owner a new link (404 for anyone else)."""
    user = current_user(request)
    work = catalog.work_get_managed(user=user, work_id=work_id)
    try:
        share = catalog_services.split_invitation_resend(work=work, share_id=share_id, user=user)
    except ApiError as exc:
        if exc.status_code == 404:
            raise Http404 from None
        messages.error(request, str(exc.detail))
    else:
        messages.success(
            request, f"The invitation to {share.email} is sent again; the old link stops working."
        )
    return redirect("dashboard:split-edit", work_id=work.pk)


@login_required
@require_POST
def invitation_cancel(request: HttpRequest, work_id: int, share_id: int) -> HttpResponse:
    """The work's manager withdraws a waiting proposal through one of its invitations."""
    work = catalog.work_get_managed(user=current_user(request), work_id=work_id)
    try:
        sheet = catalog_services.split_invitation_cancel(work=work, share_id=share_id)
    except ApiError:
        raise Http404 from None
    messages.success(
        request,
        f"The invitations of split sheet version {sheet.version} are cancelled; "
        "the work keeps the split sheet it had.",
    )
    return redirect("dashboard:split-edit", work_id=work.pk)


# Invitations (the invitee's side) ----------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest) -> HttpResponse:
    """The page the invitation email links to: the work, the share and who invited, and one Accept
    button. Signed out, it says how to sign in (or sign up with the invited address) and come back."""
    token = (request.POST.get("token") or request.GET.get("token", "")).strip()[:100]
    user = request.user if isinstance(request.user, User) else None
    if user is None:
        if request.method == "POST":
            return redirect_to_login(request.get_full_path())
        back = request.get_full_path()
        return render(
            request,
            "dashboard/invitation_signed_out.html",
            {"login_url": f"{reverse('login')}?{urlencode({'next': back})}", "signup_url": reverse("signup")},
        )
    if request.method == "POST":
        try:
            sheet = catalog_services.split_share_accept(token=token, user=user)
        except ApiError as exc:
            messages.error(request, str(exc.detail))
            return render(
                request,
                "dashboard/invitation_accept.html",
                {"share": None, "token": token},
                status=exc.status_code,
            )
        messages.success(request, f"You are now listed as a co-owner of “{sheet.work.title}”.")
        return redirect("dashboard:work", work_id=sheet.work_id)
    share = (
        catalog.invitation_for_token(token_hash=catalog_services.invitation_token_hash(token), user=user)
        if token
        else None
    )
    return render(
        request,
        "dashboard/invitation_accept.html",
        {"share": share, "token": token, "open": catalog.invitations_open_for(user=user)},
        status=200 if share is not None or not token else 404,
    )


@login_required
@require_GET
def invitations(request: HttpRequest) -> HttpResponse:
    """Every co-ownership invitation waiting for the user, each with its Accept button."""
    return render(
        request,
        "dashboard/invitations.html",
        {"page": paginate(request, catalog.invitations_open_for(user=current_user(request)))},
    )


@login_required
@require_POST
def invitation_accept_listed(request: HttpRequest, share_id: int) -> HttpResponse:
    user = current_user(request)
    try:
        sheet = catalog_services.split_invitation_accept(share_id=share_id, user=user)
    except ApiError as exc:
        if exc.status_code == 404:
            raise Http404 from None
        messages.error(request, str(exc.detail))
        return redirect("dashboard:invitations")
    messages.success(request, f"You are now listed as a co-owner of “{sheet.work.title}”.")
    return redirect("dashboard:work", work_id=sheet.work_id)
