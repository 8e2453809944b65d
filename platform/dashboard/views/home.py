"""The dashboard home: what waits for the user and their recent works."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts import selectors as account_selectors
from accounts.models import Role
from catalog import selectors as catalog
from catalog.models import (
    GrantStatus,
)
from dashboard import getting_started
from dashboard import selectors as dashboard
from dashboard.web import current_user

# Home --------------------------------------------------------------------------------------------------


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    works = catalog.works_visible_to(user=user)
    context: dict[str, Any] = {
        "recent_works": works[:5],
        "checklist": getting_started.checklist_while_unfinished(user=user),
        "invitations": catalog.invitations_open_for(user=user)[:5],
    }
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
