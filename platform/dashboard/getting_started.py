"""The getting-started checklist on the dashboard home: each role's first steps, each ticked from what
the account has really done (never from a page having been visited)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q
from django.urls import reverse

from access.models import AccessEvent
from accounts.models import ApiKey, Membership, PayoutProfile, Role, User
from catalog.models import Asset, Grant, GrantStatus, Offer, SplitSheet, Work, WorkParent
from royalties.models import Entry
from royalties.selectors import prepaid_key
from studio.models import GenerationJob, Release


@dataclass(frozen=True)
class Step:
    label: str
    done: bool
    url: str


def _payout_ready(user: User) -> bool:
    profile = PayoutProfile.objects.filter(user=user).first()
    if profile is None:
        return False
    return profile.stripe_ready or profile.wallet_ready or profile.manual_ready


def _creator_steps(user: User) -> list[Step]:
    works = Work.objects.filter(created_by=user)
    split_set = (
        SplitSheet.objects.filter(work__created_by=user)
        .annotate(owners=Count("shares"))
        .filter(Q(owners__gt=1) | Q(version__gt=1))
        .exists()
    )
    return [
        Step("Register a work", works.exists(), reverse("dashboard:work-new")),
        Step(
            "Upload its file",
            Asset.objects.filter(work__created_by=user).exists(),
            reverse("dashboard:works"),
        ),
        Step("Set who owns it (split sheet)", split_set, reverse("dashboard:works")),
        Step(
            "Publish licence terms",
            Offer.objects.filter(work__created_by=user).exists(),
            reverse("dashboard:works"),
        ),
        Step("Set up payouts", _payout_ready(user), reverse("dashboard:payout-settings")),
    ]


def _fan_steps(user: User) -> list[Step]:
    grants = Grant.objects.filter(licensee=user)
    created = (
        WorkParent.objects.filter(child__created_by=user).exists()
        or GenerationJob.objects.filter(fan=user).exists()
    )
    return [
        Step("Find a style or work to build on", grants.exists(), reverse("dashboard:browse")),
        Step(
            "Accept its licence",
            grants.filter(status=GrantStatus.ACTIVE).exists(),
            reverse("dashboard:browse"),
        ),
        Step("Create a derivative", created, reverse("dashboard:create")),
        Step(
            "Release it for sale",
            Release.objects.filter(released_by=user).exists(),
            reverse("dashboard:create"),
        ),
    ]


def _vendor_steps(user: User) -> list[Step]:
    organisation_ids = list(Membership.objects.filter(user=user).values_list("organisation_id", flat=True))
    prepaid_keys = Q()
    for organisation_id in organisation_ids:
        prepaid_keys |= Q(account__key__startswith=prepaid_key(organisation_id, ""))
    topped_up = bool(organisation_ids) and Entry.objects.filter(prepaid_keys, amount_minor__gt=0).exists()
    return [
        Step("Create an API key", ApiKey.objects.filter(user=user).exists(), reverse("dashboard:keys")),
        Step("Top up your balance", topped_up, reverse("dashboard:balance")),
        Step(
            "Make your first access",
            AccessEvent.objects.filter(organisation_id__in=organisation_ids).exists(),
            reverse("dashboard:usage"),
        ),
    ]


def checklist_for(*, user: User) -> list[Step]:
    if user.role == Role.CREATOR:
        return _creator_steps(user)
    if user.role == Role.FAN:
        return _fan_steps(user)
    return _vendor_steps(user)


def checklist_while_unfinished(*, user: User) -> list[Step]:
    """The steps while any is left to do; nothing once all are done."""
    steps = checklist_for(user=user)
    return steps if not all(step.done for step in steps) else []
