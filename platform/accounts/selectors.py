from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.models import ApiKey, Organisation, User


def organisations_of(*, user: User) -> QuerySet[Organisation]:
    return Organisation.objects.filter(membership__user=user)


def api_keys_visible_to(*, user: User) -> QuerySet[ApiKey]:
    """A user sees their own keys and the keys of organisations they belong to."""
    return ApiKey.objects.filter(Q(user=user) | Q(organisation__membership__user=user)).distinct()


def api_key_for_prefix(*, prefix: str) -> ApiKey | None:
    return ApiKey.objects.select_related("user", "organisation").filter(prefix=prefix).first()
