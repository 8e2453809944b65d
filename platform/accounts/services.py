from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from accounts import keys
from accounts.models import ApiKey, Membership, Organisation, Role, Scope, User
from accounts.selectors import api_key_for_prefix
from common import clock
from common.problems import ApiError, Forbidden

# last_used_at is written at most this often per key, so the hot path is not a write per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@transaction.atomic
def user_create(
    *,
    username: str,
    email: str,
    password: str | None,
    role: str,
    display_name: str = "",
    organisation_name: str = "",
) -> User:
    if role not in Role.values:
        raise ApiError(f"Unknown role {role!r}; choose one of {', '.join(Role.values)}.", code="invalid_role")
    if User.objects.filter(email__iexact=email).exists():
        raise ApiError("An account with this email already exists.", code="email_taken")
    user = User(username=username, email=email.lower(), role=role, display_name=display_name)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    if role == Role.VENDOR:
        organisation_create(
            name=organisation_name or f"{display_name or username}'s organisation", owner=user
        )
    return user


@transaction.atomic
def organisation_create(*, name: str, owner: User) -> Organisation:
    base = slugify(name)[:50] or "org"
    slug = base
    suffix = 1
    while Organisation.objects.filter(slug=slug).exists():
        suffix += 1
        slug = f"{base}-{suffix}"
    organisation = Organisation.objects.create(name=name, slug=slug)
    Membership.objects.create(organisation=organisation, user=owner, role=Membership.MemberRole.OWNER)
    return organisation


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str


def api_key_create(
    *,
    user: User,
    name: str,
    scopes: list[str],
    organisation: Organisation | None = None,
    expires_at: datetime | None = None,
) -> IssuedKey:
    """Issue a key. The returned secret is the only copy: it is never stored or shown again."""
    unknown = sorted(set(scopes) - set(Scope.values))
    if not scopes or unknown:
        raise ApiError(
            f"Scopes must be a non-empty subset of {', '.join(Scope.values)}; unknown: {', '.join(unknown)}.",
            code="invalid_scopes",
        )
    if (
        organisation is not None
        and not Membership.objects.filter(organisation=organisation, user=user).exists()
    ):
        raise Forbidden("You are not a member of this organisation.", code="not_a_member")
    if organisation is None and user.role == Role.VENDOR:
        organisation = Organisation.objects.filter(membership__user=user).order_by("id").first()
    if expires_at is not None and expires_at <= clock.now():
        raise ApiError("expires_at must be in the future.", code="invalid_expiry")
    for _ in range(5):
        secret = keys.generate_key()
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    name=name,
                    prefix=keys.key_prefix(secret),
                    key_hash=keys.hash_key(secret),
                    user=user,
                    organisation=organisation,
                    scopes=sorted(set(scopes)),
                    expires_at=expires_at,
                )
            return IssuedKey(api_key=api_key, secret=secret)
        except IntegrityError:  # prefix collision: astronomically rare, try another key
            continue
    raise RuntimeError("could not allocate a unique API key prefix")


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke now. The conditional update keeps the first revocation time if two requests race."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=clock.now())
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


def api_key_authenticate(*, secret: str) -> ApiKey | None:
    """The key's row if the secret is valid, active and its user active; None otherwise."""
    if not keys.is_well_formed(secret):
        return None
    api_key = api_key_for_prefix(prefix=keys.key_prefix(secret))
    if api_key is None or not keys.matches(secret, api_key.key_hash):
        return None
    if not api_key.is_active or not api_key.user.is_active:
        return None
    now = clock.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


# Keys authenticated in the last KEY_REUSE_S seconds, by the SHA-256 of their secret, for callers that
# confirm the key inside the transaction that acts on it (api_key_still_active): the metered access call
# authenticates the same few keys hundreds of times a second, and the lookup cost as much as the charge.
KEY_REUSE_S = 5.0
_KEYS_KEPT = 10_000
_keys_seen: dict[str, tuple[float, ApiKey]] = {}


def api_key_authenticate_reusing(*, secret: str) -> ApiKey | None:
    """api_key_authenticate, answered from memory for a key it accepted in the last KEY_REUSE_S seconds.

    The key may have been revoked or have expired since, or its user been deactivated: a caller must check
    api_key_still_active in the transaction that uses the key, and call api_key_forget when it fails."""
    if not keys.is_well_formed(secret):
        return None
    digest = keys.hash_key(secret)
    now = time.monotonic()
    seen = _keys_seen.get(digest)
    if seen is not None and now - seen[0] <= KEY_REUSE_S:
        return seen[1]
    api_key = api_key_authenticate(secret=secret)
    if api_key is not None:
        if len(_keys_seen) >= _KEYS_KEPT:
            _keys_seen.clear()
        _keys_seen[digest] = (now, api_key)
    return api_key


def api_key_forget(*, api_key_id: int | None = None) -> None:
    """Stop reusing a key (every key when no id is given)."""
    if api_key_id is None:
        _keys_seen.clear()
        return
    for digest in [digest for digest, (_, key) in list(_keys_seen.items()) if key.pk == api_key_id]:
        _keys_seen.pop(digest, None)
