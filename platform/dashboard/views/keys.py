"""API keys: the list and revoking one."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from accounts import selectors as account_selectors
from accounts import services as account_services
from accounts.models import ApiKey
from accounts.views import strong_session_redirect
from common.problems import ApiError
from dashboard import forms
from dashboard.web import current_user, paginate
from studio import selectors as studio_selectors

# API keys ----------------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def keys(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
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
    items = (
        account_selectors.api_keys_visible_to(user=user)
        .exclude(pk__in=studio_selectors.platform_key_ids())
        .select_related("user", "organisation")
    )
    return render(
        request,
        "dashboard/keys.html",
        {"form": form, "issued": issued, "page": paginate(request, items)},
        status=201 if issued else 200,
    )


@login_required
@require_POST
def key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    api_key: ApiKey = get_object_or_404(
        account_selectors.api_keys_visible_to(user=current_user(request)).exclude(
            pk__in=studio_selectors.platform_key_ids()
        ),
        pk=key_id,
    )
    account_services.api_key_revoke(api_key=api_key)
    messages.success(request, f"Key “{api_key.name}” ({api_key.prefix}…) is revoked.")
    return redirect("dashboard:keys")
