from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet

from accounts.models import ApiKey, Organisation, SecurityEvent, User
from common import clock
from common.rows import Columns


def organisations_of(*, user: User) -> QuerySet[Organisation]:
    return Organisation.objects.filter(membership__user=user)


def api_keys_visible_to(*, user: User) -> QuerySet[ApiKey]:
    """A user sees their own keys and the keys of organisations they belong to."""
    return ApiKey.objects.filter(Q(user=user) | Q(organisation__membership__user=user)).distinct()


_KEY = Columns(ApiKey, "k")
_KEY_USER = Columns(User, "u")
_KEY_ORGANISATION = Columns(Organisation, "o")
# Every API request runs this, so it is written out: compiling it with the ORM took longer than running it.
_KEY_SQL = (
    f"SELECT {_KEY.select()}, {_KEY_USER.select()}, {_KEY_ORGANISATION.select()} "  # noqa: S608 (constants)
    f"FROM {ApiKey._meta.db_table} k JOIN {User._meta.db_table} u ON u.id = k.user_id "
    f"LEFT JOIN {Organisation._meta.db_table} o ON o.id = k.organisation_id WHERE k.prefix = %s"
)


def api_key_for_prefix(*, prefix: str) -> ApiKey | None:
    """The key with this prefix, its user and its organisation read in one statement."""
    with connection.cursor() as cursor:
        cursor.execute(_KEY_SQL, [prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    api_key: ApiKey = _KEY.read(row, 0)
    organisation = _KEY_ORGANISATION.read(row, len(_KEY) + len(_KEY_USER))
    ApiKey.user.field.set_cached_value(api_key, _KEY_USER.read(row, len(_KEY)))
    ApiKey.organisation.field.set_cached_value(api_key, organisation)
    return api_key


# The key is usable: not revoked, not expired, its user active. Parameters: the key's id and the time,
# adapted for the database. Also part of the access charge's single statement on PostgreSQL.
ACTIVE_KEY_SQL = (
    f"SELECT 1 FROM {ApiKey._meta.db_table} k JOIN {User._meta.db_table} u ON u.id = k.user_id "  # noqa: S608
    "WHERE k.id = %s AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > %s) AND u.is_active"
)


def active_key_params(*, api_key_id: int) -> list[Any]:
    return [api_key_id, connection.ops.adapt_datetimefield_value(clock.now())]


def api_key_still_active(*, api_key_id: int) -> bool:
    """Whether the key may still be used, read now (inside the caller's transaction, if any)."""
    with connection.cursor() as cursor:
        cursor.execute(ACTIVE_KEY_SQL, active_key_params(api_key_id=api_key_id))
        return cursor.fetchone() is not None


def security_events_of(*, user: User) -> QuerySet[SecurityEvent]:
    return SecurityEvent.objects.filter(user=user).order_by("-created_at", "-id")
